"""Small stand-in ONNX models for runtime tests, so they pass before (and without) the shipped models.

The graph follows the gvd model contract: input ``features`` [batch, time, n_mfcc] -> a native GRU
node with random weights -> mean over time -> dense -> sigmoid -> ``p_female`` [batch, 1], with the
gvd metadata written by :meth:`edge.metadata.ModelMetadata.to_props`. It needs the ``onnx`` package
(the [train] extra), which the dev install has.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from edge.settings import DEFAULT_SETTINGS, FeatureSettings

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MANIFEST = REPO / "models" / "manifest.json"


def test_metadata(settings: FeatureSettings = DEFAULT_SETTINGS, cell: str = "gru",
                  threshold: float = 0.5) -> ModelMetadata:
    return ModelMetadata(feature_settings=settings, cell=cell, model_version="test-0",
                         created="2026-01-01T00:00:00Z", threshold=threshold,
                         metrics={"balanced_accuracy": 0.5}, license="test only")


test_metadata.__test__ = False  # a helper, not a pytest test


def make_model(path: Path, metadata: ModelMetadata | None = None, hidden: int = 8, seed: int = 0,
               with_metadata: bool = True, n_mfcc: int = 13) -> Path:
    """Write a random-weight GRU classifier to ``path`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    metadata = metadata or test_metadata()
    weights = {
        "W": rng.normal(0, 0.4, (1, 3 * hidden, n_mfcc)),
        "R": rng.normal(0, 0.4, (1, 3 * hidden, hidden)),
        "B": rng.normal(0, 0.1, (1, 6 * hidden)),
        "dense_w": rng.normal(0, 1.0, (hidden, 1)),
        "dense_b": np.zeros(1),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Transpose", [INPUT_NAME], ["x_tbf"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["x_tbf", "W", "R", "B"], ["y", "y_h"], hidden_size=hidden,
                         linear_before_reset=1),
        helper.make_node("ReduceMean", ["y"], ["pooled"], axes=[0], keepdims=0),  # [1, batch, hidden]
        helper.make_node("Squeeze", ["pooled", "axis0"], ["h"]),
        helper.make_node("MatMul", ["h", "dense_w"], ["logit0"]),
        helper.make_node("Add", ["logit0", "dense_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [OUTPUT_NAME]),
    ]
    initializers.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"))
    graph = helper.make_graph(
        nodes, "gvd_test_gru",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", n_mfcc])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gvd-tests")
    model.ir_version = 8
    if with_metadata:
        helper.set_model_props(model, metadata.to_props())
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_models_dir(folder: Path, names: tuple[str, ...] = ("gru", "lstm"), default: str = "gru") -> Path:
    """A models folder like the shipped one: one test model per name and a manifest that lists them."""
    entries = []
    for i, name in enumerate(names):
        path = make_model(folder / f"{name}.onnx", seed=i)
        entries.append({"name": name, "file": path.name, "sha256": sha256(path), "size_bytes": path.stat().st_size,
                        "cell": "gru", "quantized": False, "metrics": {"balanced_accuracy": 0.5 + i / 10},
                        "description": f"test model {name}"})
    manifest = {"format_version": 1, "default": default, "models": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def voice(f0: float = 200.0, seconds: float = 4.0, sample_rate: int = 16000, level: float = 0.1,
          seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a harmonic tone with gliding pitch, in syllables with short gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 15))
    syllables = (np.sin(2 * np.pi * 2.5 * t + rng.uniform(0, np.pi)) > -0.3).astype(float)
    return (level * tone * syllables).astype(np.float32)


# -- pytest fixtures (import them into a test module to use them) ------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory) -> Path:
    """A random-weight GRU model with gvd metadata, for tests that must not depend on shipped models."""
    return make_model(tmp_path_factory.mktemp("model") / "fake_gru.onnx")


@pytest.fixture(scope="session")
def fake_detector(fake_model):
    from edge import Detector

    return Detector(fake_model)


@pytest.fixture
def models_env(tmp_path, monkeypatch) -> Path:
    """A models folder with a manifest, made the one gvd finds (GVD_MODELS_DIR)."""
    from edge import model

    folder = make_models_dir(tmp_path / "models")
    monkeypatch.setenv("GVD_MODELS_DIR", str(folder))
    model.clear_cache()
    yield folder
    model.clear_cache()


shipped_models = pytest.mark.skipif(
    not SHIPPED_MANIFEST.is_file(),
    reason=f"needs the shipped models ({SHIPPED_MANIFEST} does not exist yet; 'make models' or the export step writes it)",
)
