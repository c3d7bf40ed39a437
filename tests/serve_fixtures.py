"""Helpers and fixtures for the server tests: a tiny linear ONNX model with real gvd metadata and
synthetic voices (harmonics under formant peaks), so that no test needs the shipped models or the
shared recordings. The fixtures built from these (tiny_model, voices, client) are in conftest.py.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient

from edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from edge.serve.app import ServeOptions, create_app
from edge.settings import DEFAULT_SETTINGS

SR = 16000


def raw_feature_settings():
    """The default settings without per-window normalisation (when the front end has that switch), so
    that a model averaging its input over time still sees a difference between two voices."""
    fields = DEFAULT_SETTINGS.to_dict()
    return DEFAULT_SETTINGS.with_changes(feature_norm="none") if "feature_norm" in fields else DEFAULT_SETTINGS


def build_model(path: Path, weights: np.ndarray, bias: float = 0.0) -> Path:
    """features [batch, time, n] -> ReduceMean(time) -> MatMul -> Add -> Sigmoid -> p_female [batch, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    settings = raw_feature_settings()
    width = settings.n_features
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logit_raw"]),
            helper.make_node("Add", ["logit_raw", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], [OUTPUT_NAME]),
        ],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(weights.reshape(width, 1).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([bias], np.float32), "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    metadata = ModelMetadata(feature_settings=settings, cell="gru",
                             model_version="test-1", created="2026-01-01T00:00:00Z", metrics={"accuracy": 0.5})
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def synthetic_voice(f0: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Harmonics of f0 shaped by three formant peaks, with a syllable-rate envelope and silent edges."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        f = k * f0
        amplitude = sum(np.exp(-0.5 * ((f - F) / bw) ** 2) for F, bw in ((700, 130), (1200, 150), (2600, 200)))
        y += (amplitude + 0.05) / np.sqrt(k) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    y = 0.3 * y / np.abs(y).max()
    pad = np.zeros(int(0.3 * SR))
    return np.concatenate([pad, y, pad]).astype(np.float32)


def make_client(model: Path, feedback_dir: Path, **options) -> TestClient:
    options.setdefault("corrections_per_minute", 1000)
    app = create_app(ServeOptions(model=str(model), feedback_dir=feedback_dir, **options))
    return TestClient(app, base_url="http://127.0.0.1:8000")


def services(client: TestClient):
    return client.app.state.services


def feedback(client: TestClient, prediction_id: str, label: str, **extra):
    return client.post("/feedback", json={"prediction_id": prediction_id, "correct_label": label, "consent": True,
                                          **extra})


def upload(client: TestClient, path: Path, name: str | None = None, url: str = "/predict", **data):
    with open(path, "rb") as handle:
        return client.post(url, files={"file": (name or path.name, handle.read(), "application/octet-stream")},
                           data=data or None)


def stored_rows(client: TestClient) -> list:
    return services(client).store.records()


LOW_VOICES = (115.0, 120.0, 125.0)  # pitch of the synthetic voices the calibrated models call male
HIGH_VOICES = (215.0, 220.0, 235.0)  # ... and female


@functools.lru_cache(maxsize=1)
def _separating_line() -> tuple[np.ndarray, float]:
    """Weights and bias, on the time-mean of the model input, that put the low synthetic voices at
    logit -3 and the high ones at +3, whatever the front end computes: measured, not assumed."""
    from edge.detector import Detector

    with tempfile.TemporaryDirectory(prefix="gvd-calibrate-") as name:
        folder = Path(name)
        detector = Detector(build_model(folder / "probe.onnx", np.zeros(raw_feature_settings().n_features)))
        means = {}
        for label, pitches in (("male", LOW_VOICES), ("female", HIGH_VOICES)):
            seen: list[np.ndarray] = []
            original = detector.infer
            detector.infer = lambda features, _seen=seen, _infer=original: (_seen.extend(features), _infer(features))[1]
            for f0 in pitches:
                detector.predict(write_voice(folder / f"{f0}.wav", f0))
            del detector.infer  # back to the class's method
            means[label] = np.mean([window.mean(axis=0) for window in seen], axis=0)
    difference = means["female"] - means["male"]
    weights = 6.0 * difference / float(difference @ difference)
    return weights, -float(weights @ (means["female"] + means["male"]) / 2)


def tilt_model(path: Path, right: bool) -> Path:
    """A model that calls the low synthetic voices male and the high ones female (``right``), or the reverse."""
    weights, bias = _separating_line()
    return build_model(path, weights if right else -weights, bias if right else -bias)


def write_voice(path: Path, f0: float, seconds: float = 2.0, seed: int = 0) -> Path:
    sf.write(path, synthetic_voice(f0, seconds, seed), SR, subtype="PCM_16")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RealServer:
    """``gvd serve`` in its own process on loopback, for what a TestClient cannot show (kill -9, RSS, load)."""

    def __init__(self, model: Path, feedback_dir: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "edge", "serve", "--port", str(self.port), "--model", str(model),
                     "--feedback-dir", str(feedback_dir), *args]
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> RealServer:
        import httpx

        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env,
                                        cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # waiting for start-up, not a timing assertion
            try:
                httpx.get(f"{self.url}/health", timeout=1.0)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None:
                    # the exit is the cause, not the refused connection
                    raise RuntimeError(f"gvd serve exited: {self.process.stderr.read().decode()}") from None
                time.sleep(0.1)
        raise RuntimeError("gvd serve did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def raw_request(port: int, head: bytes, body_chunks, timeout: float = 30.0) -> bytes:
    """Send a request piece by piece and return what the server answered (it may answer early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the body and closed the connection: what we want to see
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        return answer


# The fixtures live in conftest.py; these names stay importable for test modules that still import them.
_CONFTEST_FIXTURES = ("tiny_model", "voices", "client")


def __getattr__(name: str):
    if name in _CONFTEST_FIXTURES:
        import conftest

        return getattr(conftest, name)
    raise AttributeError(f"module 'serve_fixtures' has no attribute {name!r}")
