"""The runtime must never pull in the training stack (TensorFlow, librosa, noisereduce, MLflow, sklearn)."""

from __future__ import annotations

import json
import subprocess
import sys

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
    line = [l for l in result.stdout.splitlines() if l.startswith("LOADED=")]
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
