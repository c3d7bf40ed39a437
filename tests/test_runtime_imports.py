"""Import boundaries: the runtime never pulls in the training stack, and data flows one way
(train -> export -> models -> edge): export imports no training code, the runtime core imports
nothing from serve, bench, train or export, and ``gvd --help`` imports none of them either."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_fixtures import REPO

FORBIDDEN = ["tensorflow", "keras", "tf2onnx", "librosa", "noisereduce", "mlflow", "sklearn", "matplotlib",
             "train", "export", "onnx", "tqdm"]

CHECK = """
import json, sys
{body}
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({forbidden}))
print("LOADED=" + json.dumps(loaded))
"""


def loaded_after(body: str) -> list[str]:
    code = CHECK.format(body=body, forbidden=FORBIDDEN)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    line = [text for text in result.stdout.splitlines() if text.startswith("LOADED=")]
    assert line, result.stderr
    return json.loads(line[-1][len("LOADED="):])


def test_gvd_predict_imports_no_training_module(fake_model):
    sample = REPO / "models" / "samples" / "female_16k.flac"
    body = f"""
from edge.cli import cli
try:
    cli(["predict", "--json", "--model", {str(fake_model)!r}, {str(sample)!r}])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""
    assert loaded_after(body) == []


def test_python_api_imports_no_training_module(fake_model):
    body = f"""
import numpy as np
import edge
detector = edge.Detector({str(fake_model)!r})
result = detector.predict(np.zeros(48000, np.float32), 16000)
assert result.label == "no_speech"
stream = detector.stream()
stream.feed(np.zeros(24000, np.float32), 48000)
"""
    assert loaded_after(body) == []


def test_gvd_listen_from_a_file_imports_no_training_module(fake_model):
    sample = REPO / "models" / "samples" / "two_speakers.wav"
    body = f"""
from edge.cli import cli
try:
    cli(["listen", "--fast", "--json", "--input", {str(sample)!r}, "--model", {str(fake_model)!r}])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""
    assert loaded_after(body) == []


# Packages the runtime core must not import, as module-name prefixes.
OUTSIDE_THE_CORE = ("edge.serve", "edge.bench", "gvd_bench", "benchmarks", "train", "export")


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against ``package``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _package_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def violations(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(m for m in imported_modules(path, _package_of(path))
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def core_files() -> list[Path]:
    return [p for p in sorted((REPO / "edge").rglob("*.py"))
            if "serve" not in p.relative_to(REPO / "edge").parts]


def test_the_scanner_sees_relative_and_absolute_imports(tmp_path):
    sample = REPO / "edge" / "cli.py"
    assert {"edge.errors", "click"} <= imported_modules(sample, "edge")
    assert "edge.serve.app" in imported_modules(_write(tmp_path, "from .serve import app\n"), "edge")
    assert "train.data" in imported_modules(_write(tmp_path, "import train.data\n"), "edge")


def _write(folder: Path, code: str) -> Path:
    path = folder / "probe.py"
    path.write_text(code)
    return path


def test_export_imports_no_training_code():
    files = sorted((REPO / "export").rglob("*.py"))
    assert files
    assert violations(files, ("train",)) == {}


def test_runtime_core_imports_nothing_outside_it():
    files = core_files()
    assert REPO / "edge" / "model.py" in files and not any("serve" in p.parts for p in files)
    assert violations(files, OUTSIDE_THE_CORE) == {}


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["models", "--help"]])
def test_gvd_help_imports_nothing_outside_the_core(argv):
    body = f"""
from edge.cli import cli
try:
    cli({argv!r})
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
outside = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in {OUTSIDE_THE_CORE!r}))
print("OUTSIDE=" + json.dumps(outside))
"""
    result = subprocess.run([sys.executable, "-c", "import json, sys\n" + body], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("OUTSIDE=")]
    assert lines, result.stderr
    assert json.loads(lines[-1][len("OUTSIDE="):]) == []


def test_help_lists_each_command_with_its_own_summary():
    import click

    from edge.cli import COMMAND_HELP, RUNTIME_COMMANDS, cli

    ctx = click.Context(cli)
    names = cli.list_commands(ctx)  # plugins appear only where the gvd package metadata is installed
    assert set(RUNTIME_COMMANDS) <= set(names) <= set(COMMAND_HELP)
    for name in names:
        command = cli.get_command(ctx, name)
        assert COMMAND_HELP[name] == command.get_short_help_str(limit=500), name
