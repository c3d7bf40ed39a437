"""Build a gvd network as a plain ONNX graph with native LSTM / GRU / RNN operators.

tf2onnx fuses Keras 3 LSTMs but leaves GRU and SimpleRNN as Loop subgraphs that run 5-12x slower.
Building the graph ourselves from the trained weights gives every cell its fused operator and
depends on nothing but the ONNX operator definitions, which do not move.

Weight layout mapping (Keras -> ONNX):
- LSTM: Keras gates i,f,c,o -> ONNX i,o,f,c; ONNX has separate input and recurrent biases, Keras
  one, so the recurrent bias is zero.
- GRU (reset_after=True): both use z,r,h; Keras applies the reset gate after the recurrent product,
  which is ONNX linear_before_reset=1, and its bias[0]/bias[1] are ONNX Wb/Rb.
- SimpleRNN: tanh, one bias -> Wb, Rb = 0.
Keras kernels are (inputs, gates*units); ONNX W/R are (directions, gates*units, inputs).
The recurrent operators are time-major, so the batch-first input is transposed once; the
``layout=1`` attribute would avoid that, but onnxruntime's CPU kernels reject it
(measured with onnxruntime 1.32: "Batchwise recurrent operations (layout == 1) are not supported").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.errors import require
from edge.metadata import INPUT_NAME, OUTPUT_NAME, SPEECH_OUTPUT_NAME

from .spec import CellWeights, NetworkSpec, RecurrentSpec

DEFAULT_OPSET = 17
# The lowest IR version the opset allows (8 for opset 15-17): newer onnx packages would otherwise
# stamp a version that older edge runtimes (the project supports onnxruntime >= 1.20) refuse.
IR_VERSION = 8
OP_TYPES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_LSTM_ORDER = (0, 3, 1, 2)  # ONNX i,o,f,c taken from Keras i,f,c,o


@dataclass(frozen=True)
class NativeOptions:
    opset: int = DEFAULT_OPSET
    graph_name: str = "gvd"
    producer_version: str = ""


def _reorder(matrix: np.ndarray, cell: str, units: int) -> np.ndarray:
    """Columns of a Keras (rows, gates*units) matrix in ONNX gate order."""
    if cell != "lstm":
        return matrix
    blocks = [matrix[..., g * units:(g + 1) * units] for g in range(4)]
    return np.concatenate([blocks[g] for g in _LSTM_ORDER], axis=-1)


def onnx_weights(layer: RecurrentSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W, R, B tensors of the ONNX recurrent operator for ``layer`` (all directions stacked)."""
    ws, rs, bs = [], [], []
    h = layer.units
    for d in layer.directions:
        ws.append(_reorder(d.kernel, layer.cell, h).T)
        rs.append(_reorder(d.recurrent, layer.cell, h).T)
        bs.append(_bias(d, layer.cell, h))
    stack = lambda arrays: np.ascontiguousarray(np.stack(arrays), dtype=np.float32)  # noqa: E731
    return stack(ws), stack(rs), stack(bs)


def _bias(weights: CellWeights, cell: str, units: int) -> np.ndarray:
    if cell == "gru":
        return np.concatenate([weights.bias[0], weights.bias[1]])  # [Wb_zrh, Rb_zrh]
    input_bias = _reorder(weights.bias, cell, units)
    return np.concatenate([input_bias, np.zeros_like(input_bias)])


class _Graph:
    """Small helper that names nodes and constants consistently."""

    def __init__(self, helper, numpy_helper, opset: int):
        self.helper, self.numpy_helper, self.opset = helper, numpy_helper, opset
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, **attributes) -> list[str]:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=name, **attributes))
        return outputs

    def reduce(self, op: str, x: str, out: str, name: str) -> str:
        """Reduce over time (axis 0, time-major) without keeping the axis; opset-18 moved axes to an input."""
        if self.opset >= 18:
            axes = self.const(f"{name}_axes", np.array([0], dtype=np.int64))
            return self.node(op, [x, axes], [out], name, keepdims=0)[0]
        return self.node(op, [x], [out], name, axes=[0], keepdims=0)[0]


def build_native(spec: NetworkSpec, options: NativeOptions = NativeOptions()):
    """An ``onnx.ModelProto`` computing ``spec`` with native recurrent operators."""
    onnx = require("onnx", "train", "building an ONNX model")
    from onnx import TensorProto, helper, numpy_helper

    spec.validate()
    if options.opset < 14:
        raise ValueError("the native export needs opset 14 or newer")
    g = _Graph(helper, numpy_helper, options.opset)
    x = INPUT_NAME
    if spec.input_mean is not None and spec.input_std is not None:
        mean = g.const("standardize/mean", np.ascontiguousarray(spec.input_mean, dtype=np.float32))
        scale = g.const("standardize/scale", np.ascontiguousarray(1.0 / spec.input_std, dtype=np.float32))
        x = g.node("Sub", [x, mean], ["standardize/centred"], "standardize/sub")[0]
        x = g.node("Mul", [x, scale], ["standardize/out"], "standardize/mul")[0]
    x = g.node("Transpose", [x], ["time_major"], "to_time_major", perm=[1, 0, 2])[0]
    for index, layer in enumerate(spec.recurrent):
        x = _recurrent_node(g, layer, x, index)
    if spec.pooling in ("mean", "meanmax"):
        mean = g.reduce("ReduceMean", x, "pool_mean", "pool_mean")
        if spec.pooling == "meanmax":
            peak = g.reduce("ReduceMax", x, "pool_max", "pool_max")
            mean = g.node("Concat", [mean, peak], ["pool"], "pool", axis=1)[0]
        x = mean
    for index, dense in enumerate(spec.dense):
        last = index == len(spec.dense) - 1
        if last and spec.speech is not None:
            _dense(g, spec.speech, x, SPEECH_OUTPUT_NAME, SPEECH_OUTPUT_NAME)
        x = _dense(g, dense, x, OUTPUT_NAME if last else f"hidden_{index}", OUTPUT_NAME if last else None)
    graph = helper.make_graph(
        g.nodes,
        options.graph_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", spec.n_inputs])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1])
         for name in (OUTPUT_NAME, *([SPEECH_OUTPUT_NAME] if spec.speech is not None else []))],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", options.opset)],
                              producer_name="gvd-export", producer_version=options.producer_version)
    model.ir_version = max(IR_VERSION, helper.find_min_ir_version_for(list(model.opset_import)))
    onnx.checker.check_model(model, full_check=True)
    return model


def _dense(g: _Graph, dense, x: str, name: str, output: str | None) -> str:
    """Gemm + activation; ``output`` names the graph output it produces (None: an inner layer)."""
    kernel = g.const(f"{name}/kernel", np.ascontiguousarray(dense.kernel, dtype=np.float32))
    bias = g.const(f"{name}/bias", np.ascontiguousarray(dense.bias, dtype=np.float32))
    linear = g.node("Gemm", [x, kernel, bias], [f"{name}/linear"], f"{name}/gemm")[0]
    activation = "Sigmoid" if dense.activation == "sigmoid" else "Relu"
    return g.node(activation, [linear], [output or f"{name}/out"], f"{name}/{activation.lower()}")[0]


def _recurrent_node(g: _Graph, layer: RecurrentSpec, x: str, index: int) -> str:
    """Append one recurrent layer; returns [time, batch, features] or, for the final state, [batch, features]."""
    name = f"rnn_{index}"
    w, r, b = onnx_weights(layer)
    inputs = [x, g.const(f"{name}/W", w), g.const(f"{name}/R", r), g.const(f"{name}/B", b)]
    attributes: dict = {"hidden_size": layer.units,
                        "direction": "bidirectional" if layer.bidirectional else "forward"}
    if layer.cell == "gru":
        attributes["linear_before_reset"] = 1
    y, y_h = f"{name}/Y", f"{name}/Y_h"
    # Ask only for the output that is used: Y (all steps) or Y_h (final state).
    outputs = [y] if layer.return_sequences else ["", y_h]
    g.node(OP_TYPES[layer.cell], inputs, outputs, name, **attributes)
    if layer.return_sequences:  # Y: [time, directions, batch, units] -> [time, batch, directions*units]
        if not layer.bidirectional:
            axes = g.const(f"{name}/squeeze_axes", np.array([1], dtype=np.int64))
            return g.node("Squeeze", [y, axes], [f"{name}/seq"], f"{name}/squeeze")[0]
        y = g.node("Transpose", [y], [f"{name}/Y_tbdh"], f"{name}/transpose", perm=[0, 2, 1, 3])[0]
        shape = g.const(f"{name}/seq_shape", np.array([0, 0, -1], dtype=np.int64))
        return g.node("Reshape", [y, shape], [f"{name}/seq"], f"{name}/merge")[0]
    # Y_h: [directions, batch, units] -> [batch, directions*units] (forward first, as Keras concatenates)
    if not layer.bidirectional:
        axes = g.const(f"{name}/squeeze_axes", np.array([0], dtype=np.int64))
        return g.node("Squeeze", [y_h, axes], [f"{name}/last"], f"{name}/squeeze")[0]
    y_h = g.node("Transpose", [y_h], [f"{name}/Y_h_bdh"], f"{name}/transpose", perm=[1, 0, 2])[0]
    shape = g.const(f"{name}/last_shape", np.array([0, -1], dtype=np.int64))
    return g.node("Reshape", [y_h, shape], [f"{name}/last"], f"{name}/merge")[0]


def all_op_types(model) -> list[str]:
    """Op types of every node, including those inside subgraphs (to spot Loop/Scan anywhere)."""
    found: list[str] = []

    def walk(graph) -> None:
        for node in graph.node:
            found.append(node.op_type)
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.node:
                    walk(attribute.g)
                for sub in attribute.graphs:
                    walk(sub)

    walk(model.graph)
    return found
