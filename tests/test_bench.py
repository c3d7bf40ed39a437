"""``gvd bench`` end to end on a tiny model and two short clips: the report has every field, the files
are written where they should be, and the original pipeline runs when the [train] extra is present.

No timing thresholds here (speed belongs in benchmarks/): only that every figure is a positive,
finite number, and that each side says which weights it ran with.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from model_fixtures import REPO, make_model, voice

BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # gvd_bench, as the wheel installs it

from gvd_bench import report as report_module  # noqa: E402
from gvd_bench.report import Report  # noqa: E402

HEAVY = ("tensorflow", "keras", "librosa", "noisereduce", "matplotlib", "onnxruntime")


def _plugin_env(folder: Path) -> dict[str, str]:
    """An environment in which ``gvd`` finds the bench plugin as pyproject.toml declares it, whether or
    not the installed gvd's metadata is up to date with this checkout."""
    section = (REPO / "pyproject.toml").read_text().split('[project.entry-points."gvd.commands"]')[1].split("\n[")[0]
    declared = dict(re.findall(r'^(\w+) = "([^"]+)"', section, re.MULTILINE))
    dist = folder / "gvd_bench_plugin-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gvd-bench-plugin\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[gvd.commands]\nbench = {declared['bench']}\n")
    paths = [str(REPO), str(BENCHMARKS), str(folder), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def _gvd(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    import soundfile as sf

    from edge.settings import DEFAULT_SETTINGS

    folder = tmp_path_factory.mktemp("bench")
    model = make_model(folder / "tiny.onnx", n_features=DEFAULT_SETTINGS.n_features)
    clips = folder / "clips"
    clips.mkdir()
    for name, f0 in (("high.wav", 210.0), ("low.wav", 110.0)):
        sf.write(str(clips / name), voice(f0, seconds=3.5, seed=int(f0)), 16000)
    return model, clips, _plugin_env(folder / "plugin")


@pytest.fixture(scope="module")
def quick_run(inputs, tmp_path_factory) -> tuple[dict, Path]:
    """``gvd bench --quick`` without --out, from a scratch folder: the report lands in ./gvd-bench."""
    model, clips, env = inputs
    cwd = tmp_path_factory.mktemp("cwd")
    args = ["bench", "--quick", "--no-original", "--json", "--models", str(model), "--clips", str(clips)]
    done = _gvd(args, env, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), cwd


def _check_fields(value, annotation, where: str) -> None:
    """``value`` (parsed JSON) has exactly the fields of ``annotation`` (a report dataclass), recursively."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return
        annotation = options[0]
    if typing.get_origin(annotation) is list:
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check_fields(item, typing.get_args(annotation)[0], f"{where}[{i}]")
        return
    if dataclasses.is_dataclass(annotation):
        hints = typing.get_type_hints(annotation, vars(report_module))
        assert isinstance(value, dict), where
        assert set(value) == {f.name for f in dataclasses.fields(annotation)}, where
        for name, hint in hints.items():
            _check_fields(value[name], hint, f"{where}.{name}")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_json_has_every_field_of_the_typed_report(quick_run):
    report, _ = quick_run
    _check_fields(report, Report, "report")
    assert report["schema"] == report_module.SCHEMA_VERSION
    assert report["settings"]["clips"] == ["high.wav", "low.wav"]
    assert report["original"] is None
    assert any("--no-original" in note for note in report["notes"])


def test_every_gvd_figure_is_measured(quick_run, inputs):
    report, _ = quick_run
    model, clips, _ = inputs
    (ours,) = report["gvd"]
    assert ours["name"] == "gvd tiny" and ours["threads"] == 1
    assert ours["weights"]["path"] == str(model.resolve())
    assert len(ours["weights"]["sha256"]) == 64
    e2e = ours["e2e_ms"]
    assert all(_positive(e2e[q]) for q in ("p50", "p90", "p99"))
    assert e2e["p50"] <= e2e["p90"] <= e2e["p99"]
    from edge.detector import Detector

    own = Detector(model).predict(sorted(clips.iterdir())[0]).timings_ms
    assert [s["stage"] for s in ours["stages"]] == [name for name in own if name != "total"]
    for stage in ours["stages"]:
        assert all(math.isfinite(stage["ms"][q]) and stage["ms"][q] >= 0 for q in ("p50", "p90", "p99")), stage
    assert [c["seconds"] for c in ours["lengths"]] == [1.0, 3.0]  # --quick lengths
    for cost in ours["lengths"]:
        assert cost["runs"] >= 1 and _positive(cost["ms_per_clip"])
        assert cost["ms_per_audio_second"] == pytest.approx(cost["ms_per_clip"] / cost["seconds"])
    (batch,) = ours["throughput"]
    assert batch["jobs"] == 1 and batch["files"] == 4
    assert batch["audio_seconds"] == pytest.approx(4 * 3.5, rel=0.01)
    for key in ("realtime_factor", "cold_start_ms", "peak_rss_mb", "stream_cpu_percent", "load_ms", "model_size_kb"):
        assert _positive(ours[key]), (key, ours[key])
    assert ours["model_size_kb"] == pytest.approx(model.stat().st_size / 1024)
    assert ours["peak_rss_mb"] > 10  # numpy and onnxruntime alone take tens of MB


def test_without_the_original_nothing_is_compared_or_invented(quick_run):
    report, _ = quick_run
    for row in report["comparison"]:
        assert row["original"] is None and row["times_better"] is None, row
    goals = {g["goal"]: g for g in report["goals"]}
    speedup = goals["end to end p50, times faster than the original"]
    assert speedup["measured"] is None and speedup["met"] is None
    p50 = goals["end to end p50 per clip (ms)"]
    assert p50["measured"] == report["gvd"][0]["e2e_ms"]["p50"]
    assert p50["met"] == (p50["measured"] <= 5.0)


def test_default_out_is_gvd_bench_in_the_working_folder(quick_run):
    report, cwd = quick_run
    out = cwd / "gvd-bench"
    assert json.loads((out / "bench.json").read_text()) == report
    markdown = (out / "bench.md").read_text()
    assert "| pipeline |" in markdown and "gvd tiny" in markdown
    charts = [out / "bench.png", out / "bench_lengths.png"]
    if all(c.exists() for c in charts):
        assert all(c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)
    else:
        assert any("matplotlib" in note for note in report["notes"])


def test_bad_lengths_is_a_usage_error(inputs, tmp_path):
    _, _, env = inputs
    done = _gvd(["bench", "--lengths", "one", "--out", str(tmp_path)], env, tmp_path, timeout=120)
    assert done.returncode == 2
    assert "--lengths" in done.stderr
    assert not (tmp_path / "bench.json").exists()


def test_bench_is_a_plugin_and_its_help_imports_nothing_heavy(inputs, tmp_path):
    from edge.cli import RUNTIME_COMMANDS

    assert "bench" not in RUNTIME_COMMANDS
    assert not (REPO / "edge" / "bench.py").exists()
    _, _, env = inputs
    code = (
        "import sys\nfrom edge.cli import cli\n"
        "try:\n    cli(['bench', '--help'])\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--original-keras" in done.stdout  # the plugin's own help, not a stand-in
    assert done.stdout.strip().splitlines()[-1] == "HEAVY="


@pytest.mark.slow  # three TensorFlow start-ups: 30-90 s
def test_original_side_runs_with_the_committed_weights(inputs, tmp_path):
    missing = [m for m in ("tensorflow", "keras", "librosa", "noisereduce") if _missing(m)]
    if missing:
        pytest.skip(f"the original pipeline needs the [train] extra (missing: {', '.join(missing)})")
    model, clips, env = inputs
    out = tmp_path / "results"
    done = _gvd(["bench", "--quick", "--json", "--models", str(model), "--clips", str(clips), "--lengths", "1",
                 "--batch-files", "2", "--out", str(out)], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    _check_fields(report, Report, "report")
    assert json.loads((out / "bench.json").read_text()) == report
    assert not (tmp_path / "gvd-bench").exists()
    original = report["original"]
    keras = BENCHMARKS / "original" / "lstm.keras"
    assert original["name"] == "original lstm"
    assert original["weights"]["path"] == str(keras)
    assert original["weights"]["description"] == json.loads(keras.with_suffix(".json").read_text())["description"]
    assert all(_positive(original["e2e_ms"][q]) for q in ("p50", "p90", "p99"))
    assert [c["seconds"] for c in original["lengths"]] == pytest.approx([1.0])
    assert [t["files"] for t in original["throughput"]] == [2]
    for key in ("realtime_factor", "cold_start_ms", "peak_rss_mb", "stream_cpu_percent"):
        assert _positive(original[key]), (key, original[key])
    compared = {row["figure"]: row for row in report["comparison"]}
    assert _positive(compared["end to end per clip, p50"]["times_better"])
    assert _positive(compared["peak RSS, one file"]["times_better"])


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def test_pi_check_script_documents_itself():
    script = REPO / "benchmarks" / "pi_check.sh"
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "PASS" in shown.stdout and "--rebuild" in shown.stdout
    wrong = subprocess.run(["bash", str(script), "--no-such-option"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown option" in wrong.stderr


def test_length_clips_repeat_the_speech_to_the_exact_length(inputs, tmp_path):
    import numpy as np
    import soundfile as sf
    from gvd_bench.clips import LENGTH_RATE, length_clips, mono

    _, clips, _ = inputs
    sources = sorted(clips.iterdir())
    files = length_clips(sources, (1.0, 10.0), tmp_path)
    signal = np.concatenate([mono(c, LENGTH_RATE) for c in sources])
    for path, seconds in zip(files, (1.0, 10.0), strict=True):
        samples, rate = sf.read(str(path), dtype="float32")
        assert rate == LENGTH_RATE and samples.size == int(seconds * LENGTH_RATE)
        expected = np.resize(signal, samples.size)  # the clips one after another, over and over
        assert np.abs(samples - expected).max() < 1e-3  # 16-bit FLAC


def test_goals_and_ratios_follow_the_measurements():
    from gvd_bench.report import LengthCost, Percentiles, Ratio, SideResult, Weights
    from gvd_bench.runs import Plan
    from gvd_bench.suite import compare, goals

    def side(p50: float, per_second_3: float, per_second_60: float) -> SideResult:
        lengths = [LengthCost(3.0, 5, 3 * per_second_3, per_second_3),
                   LengthCost(60.0, 5, 60 * per_second_60, per_second_60)]
        return SideResult(name="x", weights=Weights("w", "0" * 64, "test"), threads=1,
                          e2e_ms=Percentiles(p50, p50, p50), stages=[], realtime_factor=100.0, lengths=lengths,
                          throughput=[], cold_start_ms=150.0, peak_rss_mb=70.0, stream_cpu_percent=0.4,
                          stream_hop_seconds=0.5, load_ms=1.0, model_size_kb=40.0)

    ours, original = side(4.0, 2.0, 1.5), side(160.0, 50.0, 50.0)
    plan = Plan(lengths=(3.0, 60.0), jobs=())
    found = {g.goal: g for g in goals(ours, original, plan)}
    assert found["end to end p50, times faster than the original"].measured == pytest.approx(40.0)
    assert found["cost per audio second, 60 s clip / 3 s clip"].measured == pytest.approx(0.75)
    assert found["gvd predict one file, peak RSS (MB)"].met is False
    assert all(g.met for name, g in found.items() if name != "gvd predict one file, peak RSS (MB)")
    rows = {r.figure: r for r in compare(ours, original, plan)}
    assert rows["cost of a 60 s clip per audio second"].times_better == pytest.approx(50.0 / 1.5)
    assert rows["real-time factor"].times_better == pytest.approx(1.0)
    assert Ratio.of("f", "ms", 1.0, None, True).times_better is None
