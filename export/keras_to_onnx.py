"""The plain tf2onnx conversion, kept as the reference the native export is measured against.

With TF 2.21 / Keras 3 / tf2onnx 1.17 only LSTM is fused; GRU and SimpleRNN come out as Loop
subgraphs. ``gvd export --method tf2onnx`` and benchmarks/bench_export.py use this path.
"""

from __future__ import annotations

from edge.errors import require
from edge.metadata import INPUT_NAME, OUTPUT_NAME

from .errors import ExportError
from .native import DEFAULT_OPSET, IR_VERSION


def convert_tf2onnx(model, opset: int = DEFAULT_OPSET):
    """Convert a Keras model with tf2onnx's defaults; returns an ``onnx.ModelProto``."""
    tf = require("tensorflow", "train", "converting with tf2onnx")
    tf2onnx = require("tf2onnx", "train", "converting with tf2onnx")
    n_inputs = int(model.inputs[0].shape[-1])
    signature = (tf.TensorSpec((None, None, n_inputs), tf.float32, name=INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx raises a wide variety of errors
        raise ExportError(f"tf2onnx could not convert the model: {exc}") from exc
    _rename_output(proto)
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    return proto


def _rename_output(proto) -> None:
    """Give the single output the documented name, whatever tf2onnx called it."""
    if len(proto.graph.output) != 1 or len(proto.graph.input) != 1:
        raise ExportError("tf2onnx produced a graph with more than one input or output")
    if proto.graph.input[0].name != INPUT_NAME:
        raise ExportError(f"tf2onnx named the input {proto.graph.input[0].name!r}, expected {INPUT_NAME!r}")
    old = proto.graph.output[0].name
    if old == OUTPUT_NAME:
        return
    for node in proto.graph.node:
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
    proto.graph.output[0].name = OUTPUT_NAME
