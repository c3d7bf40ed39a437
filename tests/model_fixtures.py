"""Small stand-in ONNX models for runtime tests, so they pass before (and without) the shipped models.

The graph follows the gvd model contract: input ``features`` [batch, time, n_features] -> a native GRU
node with random weights -> mean over time -> dense -> sigmoid -> ``p_female`` [batch, 1] (and, when
asked, a second head -> ``p_speech`` [batch, 1]), with the gvd metadata written by
:meth:`edge.metadata.ModelMetadata.to_props`; ``n_features`` comes from the metadata's feature settings.
:func:`make_pitch_model` answers from the pitch column alone, so a test knows which voice it calls
female. They need the ``onnx`` package (the [train] extra), which the dev install has.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.files import sha256_file as sha256
from edge.metadata import INPUT_NAME, OUTPUT_NAME, SPEECH_OUTPUT_NAME, ModelMetadata
from edge.settings import DEFAULT_SETTINGS, FeatureSettings

from signals import voice

__all__ = ["REPO", "SHIPPED_MANIFEST", "make_contract_model", "make_model", "make_models_dir", "make_pitch_model",
           "sha256", "shipped_models", "test_metadata", "voice"]

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MANIFEST = REPO / "models" / "manifest.json"


def test_metadata(settings: FeatureSettings = DEFAULT_SETTINGS, cell: str = "gru",
                  threshold: float = 0.5, speech_output: bool = False) -> ModelMetadata:
    outputs = (OUTPUT_NAME, SPEECH_OUTPUT_NAME) if speech_output else (OUTPUT_NAME,)
    return ModelMetadata(feature_settings=settings, cell=cell, model_version="test-0",
                         created="2026-01-01T00:00:00Z", threshold=threshold,
                         metrics={"balanced_accuracy": 0.5}, license="test only", outputs=outputs)


test_metadata.__test__ = False  # a helper, not a pytest test


def make_model(path: Path, metadata: ModelMetadata | None = None, hidden: int = 8, seed: int = 0,
               with_metadata: bool = True, n_features: int | None = None,
               speech_logit: float | None = None) -> Path:
    """Write a random-weight GRU classifier to ``path`` and return it.

    With ``speech_logit`` the model also outputs ``p_speech`` = sigmoid(small random projection +
    ``speech_logit``): -8 makes it reject every window (below 0.001), +8 accept every one.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    metadata = metadata or test_metadata(speech_output=speech_logit is not None)
    if speech_logit is not None and not metadata.has_speech_output:
        raise ValueError("a model with a p_speech output needs metadata that declares it")
    n_features = n_features or metadata.feature_settings.n_features
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
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])]
    if speech_logit is not None:
        initializers += [numpy_helper.from_array(rng.normal(0, 0.1, (hidden, 1)).astype(np.float32), "speech_w"),
                         numpy_helper.from_array(np.array([speech_logit], np.float32), "speech_b")]
        nodes += [helper.make_node("MatMul", ["h", "speech_w"], ["speech0"]),
                  helper.make_node("Add", ["speech0", "speech_b"], ["speech_logit"]),
                  helper.make_node("Sigmoid", ["speech_logit"], [SPEECH_OUTPUT_NAME])]
        outputs.append(helper.make_tensor_value_info(SPEECH_OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1]))
    graph = helper.make_graph(
        nodes, "gvd_test_gru",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", n_features])],
        outputs, initializers,
    )
    return _save(graph, path, metadata if with_metadata else None)


def make_pitch_model(path: Path, metadata: ModelMetadata | None = None, gain: float = 10.0,
                     speech_from_pitch: bool = False) -> Path:
    """A model that calls a voice female from its pitch alone: sigmoid(gain * mean log2(F0 / 150 Hz)).

    The pitch column (the first after the cepstra) is 0 on unvoiced frames, so a 220 Hz voice gives
    p_female near 1 and a 110 Hz voice near 0: a test knows the right answer without a trained model.
    With ``speech_from_pitch`` its p_speech output is the same number: high voices are accepted as
    speech, low ones rejected (a stand-in for a sound the speech output mostly rejects).
    """
    from onnx import TensorProto, helper, numpy_helper

    metadata = metadata or test_metadata(speech_output=speech_from_pitch)
    settings = metadata.feature_settings
    if not settings.pitch:
        raise ValueError("the pitch model needs settings with pitch columns")
    column = settings.n_mfcc
    initializers = [numpy_helper.from_array(np.array([v], np.int64), name)
                    for name, v in (("lo", column), ("hi", column + 1), ("last", 2))]
    initializers.append(numpy_helper.from_array(np.array([gain], np.float32), "gain"))
    nodes = [
        helper.make_node("Slice", [INPUT_NAME, "lo", "hi", "last"], ["log_f0"]),  # [batch, time, 1]
        helper.make_node("ReduceMean", ["log_f0"], ["mean_log_f0"], axes=[1], keepdims=0),  # [batch, 1]
        helper.make_node("Mul", ["mean_log_f0", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [OUTPUT_NAME]),
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])]
    if speech_from_pitch:
        nodes.append(helper.make_node("Identity", [OUTPUT_NAME], [SPEECH_OUTPUT_NAME]))
        outputs.append(helper.make_tensor_value_info(SPEECH_OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1]))
    graph = helper.make_graph(
        nodes, "gvd_test_pitch",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", settings.n_features])],
        outputs, initializers,
    )
    return _save(graph, path, metadata)


def _save(graph, path: Path, metadata: ModelMetadata | None) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gvd-tests")
    model.ir_version = 8
    if metadata is not None:
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


def make_contract_model(path: Path, metadata: ModelMetadata | None = None, *, n_features: int | None = None,
                        input_type: int | None = None, input_shape: list | None = None,
                        outputs: dict[str, list] | None = None) -> Path:
    """A minimal graph with free I/O types and shapes, for the load-time contract checks.

    features -> mean over time -> MatMul -> Sigmoid, one output per entry of ``outputs``
    (name -> declared shape, whose last dimension is the number of columns).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    metadata = metadata or test_metadata()
    n_features = n_features or metadata.feature_settings.n_features
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
    helper.set_model_props(model, metadata.to_props())
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
