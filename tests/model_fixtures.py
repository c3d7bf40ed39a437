"""Small stand-in ONNX models for runtime tests, so they pass before (and without) the shipped models.

The graph follows the gvd model contract: input ``features`` [batch, time, n_features] -> a native GRU
node with random weights -> mean over time -> dense -> sigmoid -> ``p_female`` [batch, 1], with the
gvd metadata written by :meth:`edge.metadata.ModelMetadata.to_props`. It needs the ``onnx`` package
(the [train] extra), which the dev install has.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.files import sha256_file as sha256
from edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from edge.settings import DEFAULT_SETTINGS, FeatureSettings

from signals import voice

__all__ = ["REPO", "SHIPPED_MANIFEST", "make_contract_model", "make_model", "make_models_dir", "sha256",
           "shipped_models", "test_metadata", "voice"]

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MANIFEST = REPO / "models" / "manifest.json"


def test_metadata(settings: FeatureSettings = DEFAULT_SETTINGS, cell: str = "gru",
                  threshold: float = 0.5) -> ModelMetadata:
    return ModelMetadata(feature_settings=settings, cell=cell, model_version="test-0",
                         created="2026-01-01T00:00:00Z", threshold=threshold,
                         metrics={"balanced_accuracy": 0.5}, license="test only")


test_metadata.__test__ = False  # a helper, not a pytest test


def make_model(path: Path, metadata: ModelMetadata | None = None, hidden: int = 8, seed: int = 0,
               with_metadata: bool = True, n_features: int = 13) -> Path:
    """Write a random-weight GRU classifier to ``path`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    metadata = metadata or test_metadata()
    weights = {
        "W": rng.normal(0, 0.4, (1, 3 * hidden, n_features)),
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
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", n_features])],
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


def make_contract_model(path: Path, metadata: ModelMetadata | None = None, *, n_features: int = 13,
                        input_type: int | None = None, input_shape: list | None = None,
                        outputs: dict[str, list] | None = None) -> Path:
    """A minimal graph with free I/O types and shapes, for the load-time contract checks.

    features -> mean over time -> MatMul -> Sigmoid, one output per entry of ``outputs``
    (name -> declared shape, whose last dimension is the number of columns).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    input_type = TensorProto.FLOAT if input_type is None else input_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(input_type)
    outputs = outputs if outputs is not None else {OUTPUT_NAME: ["batch", 1]}
    nodes = [helper.make_node("ReduceMean", [INPUT_NAME], ["pooled"], axes=[1], keepdims=0)]
    initializers, declared = [], []
    for k, (name, shape) in enumerate(outputs.items()):
        width = shape[-1] if isinstance(shape[-1], int) else 1
        initializers.append(numpy_helper.from_array(np.full((n_features, width), 0.01, dtype=dtype), f"w{k}"))
        nodes += [helper.make_node("MatMul", ["pooled", f"w{k}"], [f"logit{k}"]),
                  helper.make_node("Sigmoid", [f"logit{k}"], [name])]
        declared.append(helper.make_tensor_value_info(name, input_type, shape))
    shape = input_shape if input_shape is not None else ["batch", "time", n_features]
    graph = helper.make_graph(nodes, "gvd_contract_test",
                              [helper.make_tensor_value_info(INPUT_NAME, input_type, shape)], declared, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gvd-tests")
    model.ir_version = 8
    helper.set_model_props(model, (metadata or test_metadata()).to_props())
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


shipped_models = pytest.mark.skipif(
    not SHIPPED_MANIFEST.is_file(),
    reason=f"needs the shipped models ({SHIPPED_MANIFEST} does not exist yet; "
           "'make models' or the export step writes it)",
)

# The fixtures live in conftest.py; these names stay importable for test modules that still import them.
_CONFTEST_FIXTURES = ("fake_model", "fake_detector", "models_env")


def __getattr__(name: str):
    if name in _CONFTEST_FIXTURES:
        import conftest

        return getattr(conftest, name)
    raise AttributeError(f"module 'model_fixtures' has no attribute {name!r}")
