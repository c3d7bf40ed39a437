"""``gvd bench`` on a tiny model: the report has the documented structure and sane numbers.

No timing thresholds here (speed belongs in benchmarks/): only that every figure is a positive,
finite number and that the files are written.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from edge.settings import DEFAULT_SETTINGS

STAGES = ("decode", "resample", "clean", "features", "inference")


def _tiny_model(path: Path) -> Path:
    """features [batch, time, 13] -> max over time -> linear -> sigmoid -> p_female [batch, 1]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    width = DEFAULT_SETTINGS.n_features
    weights = np.linspace(-0.5, 0.5, width, dtype=np.float32).reshape(width, 1)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", [INPUT_NAME], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], [OUTPUT_NAME]),
        ],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    metadata = ModelMetadata(feature_settings=DEFAULT_SETTINGS, cell="gru", model_version="test-0",
                             created="2026-01-01T00:00:00Z")
    helper.set_model_props(model, metadata.to_props())
    onnx.save(model, str(path))
    return path


def _voice_clip(path: Path, f0: float, rng: np.random.Generator, seconds: float = 3.0) -> Path:
    """A voiced, syllable-modulated harmonic signal: enough 'speech' for the detector's VAD."""
    import soundfile as sf

    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    signal = 0.1 * voice * syllables + 0.003 * rng.standard_normal(t.size)
    sf.write(str(path), signal.astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[dict, Path, Path]:
    folder = tmp_path_factory.mktemp("bench")
    model = _tiny_model(folder / "tiny.onnx")
    clips = folder / "clips"
    clips.mkdir()
    rng = np.random.default_rng(7)
    _voice_clip(clips / "high.wav", 210.0, rng)
    _voice_clip(clips / "low.wav", 110.0, rng)
    out = folder / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "--quick", "--no-original", "--json",
         "--models", str(model), "--clips", str(clips), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout), out, model


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_report_top_level(quick_report):
    report, _, _ = quick_report
    assert report["target_ms"] == 200
    machine = report["machine"]
    for key in ("cpu", "cores", "python", "numpy", "onnxruntime"):
        assert machine[key], key
    assert machine["cores"] >= 1
    assert report["original"] is None and report["speedup"] is None
    assert report["settings"]["clips"] == ["high.wav", "low.wav"]


def test_result_numbers_are_positive_and_finite(quick_report):
    report, _, model = quick_report
    assert len(report["results"]) == 1  # --quick measures one thread count
    row = report["results"][0]
    assert row["model"] == "tiny" and row["threads"] == 1
    e2e = row["e2e_ms"]
    assert all(_positive(e2e[q]) for q in ("p50", "p95", "p99"))
    assert e2e["p50"] <= e2e["p95"] <= e2e["p99"]
    assert set(STAGES) <= set(row["stages_ms"])
    for stage in STAGES:
        for q in ("p50", "p95", "p99"):
            value = row["stages_ms"][stage][q]
            assert math.isfinite(value) and value >= 0, (stage, q, value)
    # The stages are parts of the end-to-end time, which also includes the Python around them.
    assert sum(row["stages_ms"][s]["p50"] for s in STAGES) <= e2e["p99"] * 1.5
    for key in ("cold_start_ms", "peak_rss_mb", "stream_cpu_percent", "model_size_kb", "load_ms"):
        assert _positive(row[key]), (key, row[key])
    assert row["model_size_kb"] == pytest.approx(model.stat().st_size / 1024)
    # A process that loads numpy and onnxruntime takes tens of MB at least; a cold start is slower
    # than a warm prediction.
    assert row["peak_rss_mb"] > 10
    assert row["cold_start_ms"] > e2e["p50"]


def test_goals_report_what_was_measured(quick_report):
    report, _, _ = quick_report
    goals = {g["goal"]: g for g in report["goals"]}
    p50 = goals["e2e p50 per clip (ms)"]
    assert p50["measured"] == report["results"][0]["e2e_ms"]["p50"]
    assert p50["met"] == (p50["measured"] <= 5.0)
    # Without the original pipeline the ratios are not measured, not invented.
    assert goals["e2e speed-up vs original (x)"]["measured"] is None
    assert goals["e2e speed-up vs original (x)"]["met"] is None


def test_files_written(quick_report):
    report, out, _ = quick_report
    assert json.loads((out / "bench.json").read_text())["results"] == report["results"]
    markdown = (out / "bench.md").read_text()
    assert "| model |" in markdown and "tiny" in markdown
    if (out / "bench.png").exists():
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert any("matplotlib" in note for note in report["notes"])


def test_bad_threads_is_a_usage_error(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "edge", "bench", "--threads", "one", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "--threads" in completed.stderr


def test_module_imports_stay_light():
    code = ("import sys, edge.bench; heavy = [m for m in ('onnxruntime', 'tensorflow', 'librosa', 'matplotlib', "
            "'noisereduce', 'soundfile') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_pi_check_script_documents_itself():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "pi_check.sh"
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "PASS" in shown.stdout and "--rebuild" in shown.stdout
    wrong = subprocess.run(["bash", str(script), "--no-such-option"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown option" in wrong.stderr
