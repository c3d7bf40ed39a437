"""Read a trained Keras model (the layout of train/models.py) into a NetworkSpec.

Only what the native builder can reproduce exactly is accepted; anything else (another activation,
stateful or backwards layers, masking, another merge mode) raises ExportError instead of exporting
a model that silently differs. The parity check then proves the result numerically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import require
from edge.metadata import SPEECH_OUTPUT_NAME

from .errors import ExportError
from .spec import CellWeights, DenseSpec, NetworkSpec, RecurrentSpec

_CELL_OF = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}
_IGNORED = {"InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout"}


def load_keras(path: str | Path):
    """Load a ``.keras`` file for inference (no optimizer state needed)."""
    keras = require("keras", "train", "exporting a Keras model")
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no Keras model at {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for damaged or foreign files
        raise ExportError(f"cannot load the Keras model {path}: {exc}") from exc


def _check_rnn_config(layer, where: str) -> None:
    config = layer.get_config()
    expected = {"activation": "tanh", "stateful": False, "go_backwards": False, "return_state": False}
    if type(layer).__name__ != "SimpleRNN":
        expected["recurrent_activation"] = "sigmoid"
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ExportError(f"{where}: {key}={config.get(key)!r} is not supported by the native export "
                              f"(needs {value!r})")


def _cell_weights(layer, cell: str) -> CellWeights:
    inner = layer.cell
    units = int(inner.units)
    kernel = np.asarray(inner.kernel.numpy(), dtype=np.float32)
    recurrent = np.asarray(inner.recurrent_kernel.numpy(), dtype=np.float32)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    if inner.use_bias:
        bias = np.asarray(inner.bias.numpy(), dtype=np.float32)
    else:
        bias = np.zeros((2, 3 * units) if cell == "gru" else (gates * units,), dtype=np.float32)
    if cell == "gru" and not getattr(inner, "reset_after", True):
        # train.models always builds reset_after=True, the variant that maps onto ONNX
        # linear_before_reset=1 with its two bias vectors.
        raise ExportError("GRU with reset_after=False is not produced by train.models; re-train with "
                          "reset_after=True (the layout every runtime fuses)")
    return CellWeights(kernel=kernel, recurrent=recurrent, bias=bias)


def _recurrent(layer) -> RecurrentSpec:
    kind = type(layer).__name__
    if kind == "Bidirectional":
        if layer.merge_mode != "concat":
            raise ExportError(f"{layer.name}: Bidirectional merge_mode={layer.merge_mode!r} is not "
                              "supported (needs 'concat')")
        forward, backward = layer.forward_layer, layer.backward_layer
        cell = _CELL_OF.get(type(forward).__name__)
        if cell is None or type(backward).__name__ != type(forward).__name__:
            raise ExportError(f"{layer.name}: unsupported wrapped layer {type(forward).__name__}")
        _check_rnn_config(forward, layer.name)
        if not backward.go_backwards:
            raise ExportError(f"{layer.name}: the backward layer does not run backwards")
        return RecurrentSpec(cell=cell, units=int(forward.cell.units),
                             directions=(_cell_weights(forward, cell), _cell_weights(backward, cell)),
                             return_sequences=bool(forward.return_sequences))
    cell = _CELL_OF[kind]
    _check_rnn_config(layer, layer.name)
    return RecurrentSpec(cell=cell, units=int(layer.cell.units), directions=(_cell_weights(layer, cell),),
                         return_sequences=bool(layer.return_sequences))


def _activation_name(layer) -> str:
    name = layer.get_config().get("activation")
    return name if isinstance(name, str) else str(name)


class _Layers:
    """The supported layers of a gvd Keras model, read in order into their NetworkSpec parts."""

    def __init__(self, model) -> None:
        self.model = model
        self.recurrent: list[RecurrentSpec] = []
        self.dense: list[DenseSpec] = []
        self.speech: DenseSpec | None = None
        self.standardize: tuple[np.ndarray, np.ndarray] | None = None
        self.pool_kinds: list[str] = []

    def add(self, layer) -> None:
        kind = type(layer).__name__
        if kind in _IGNORED:
            return  # identity at inference
        if kind == "Masking":
            raise ExportError("masking layers are not supported: gvd windows are never padded")
        if kind == "Bidirectional" or kind in _CELL_OF:
            self._recurrent(layer)
        elif kind in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
            self._pooling(layer, kind)
        elif kind == "Concatenate":
            self._concatenate(layer)
        elif kind == "Dense":
            self._dense(layer)
        elif kind == "Normalization":
            self._normalization(layer)
        else:
            raise ExportError(f"{layer.name}: layer type {kind} is not supported by the native export")

    def _normalization(self, layer) -> None:
        if self.recurrent or self.standardize is not None:
            raise ExportError(f"{layer.name}: input standardisation must come first, once")
        mean = np.asarray(layer.mean, dtype=np.float32).reshape(-1)
        std = np.sqrt(np.maximum(np.asarray(layer.variance, dtype=np.float32).reshape(-1), 1e-12))
        self.standardize = (mean, std.astype(np.float32))

    def _recurrent(self, layer) -> None:
        if self.pool_kinds or self.dense:
            raise ExportError(f"{layer.name}: a recurrent layer after pooling is not supported")
        self.recurrent.append(_recurrent(layer))

    def _pooling(self, layer, kind: str) -> None:
        config = layer.get_config()
        if config.get("keepdims") or config.get("data_format", "channels_last") != "channels_last":
            raise ExportError(f"{layer.name}: only channels_last pooling without keepdims is supported")
        self.pool_kinds.append("mean" if kind == "GlobalAveragePooling1D" else "max")

    def _concatenate(self, layer) -> None:
        if self.pool_kinds != ["mean", "max"] or layer.get_config().get("axis", -1) not in (-1, 1):
            raise ExportError(f"{layer.name}: only the mean+max pooling concatenation is supported")
        # The inputs must come in the order mean, max (as train.models builds them).
        sources = [node_input._keras_history.operation.name for node_input in layer.input]
        kinds = [type(self.model.get_layer(name)).__name__ for name in sources]
        if kinds != ["GlobalAveragePooling1D", "GlobalMaxPooling1D"]:
            raise ExportError(f"{layer.name}: concatenates {kinds}, expected mean then max pooling")
        self.pool_kinds = ["meanmax"]

    def _dense(self, layer) -> None:
        activation = _activation_name(layer)
        if activation not in ("relu", "sigmoid"):
            raise ExportError(f"{layer.name}: Dense activation {activation!r} is not supported")
        kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
        bias = (np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias
                else np.zeros(kernel.shape[1], dtype=np.float32))
        if layer.name == SPEECH_OUTPUT_NAME:
            self.speech = DenseSpec(kernel=kernel, bias=bias, activation=activation)
        else:
            self.dense.append(DenseSpec(kernel=kernel, bias=bias, activation=activation))


def read_network(model) -> NetworkSpec:
    """Describe ``model`` (a keras.Model built by train.models.build_model) as a NetworkSpec."""
    inputs = model.inputs
    if len(inputs) != 1 or len(model.outputs) not in (1, 2):
        raise ExportError("the model must have exactly one input and one output (two with p_speech)")
    shape = tuple(inputs[0].shape)
    if len(shape) != 3 or shape[-1] is None:
        raise ExportError(f"the model input must be (batch, time, n_features), got {shape}")
    layers = _Layers(model)
    for layer in model.layers:
        layers.add(layer)
    recurrent, dense, pool_kinds = layers.recurrent, layers.dense, layers.pool_kinds
    pooling = {(): "last", ("mean",): "mean", ("meanmax",): "meanmax"}.get(tuple(pool_kinds))
    if pooling is None:
        raise ExportError(f"unsupported pooling layers {pool_kinds}")
    if len({layer.cell for layer in recurrent}) > 1:
        raise ExportError("mixing recurrent cell types in one model is not supported")
    spec = NetworkSpec(n_inputs=int(shape[-1]), recurrent=tuple(recurrent), pooling=pooling, dense=tuple(dense),
                       speech=layers.speech,
                       input_mean=layers.standardize[0] if layers.standardize else None,
                       input_std=layers.standardize[1] if layers.standardize else None)
    try:
        spec.validate()
    except ValueError as exc:
        raise ExportError(f"the model does not have the gvd layout: {exc}") from exc
    return spec
