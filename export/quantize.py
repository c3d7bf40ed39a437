"""Dynamic int8 quantization with onnxruntime, where the recurrent operator has an int8 kernel.

onnxruntime quantizes LSTM (to com.microsoft DynamicQuantizeLSTM) and MatMul/Gemm, but has no int8
GRU or RNN: quantizing those models would only touch the tiny Dense head, so they are not offered.
Only the LSTM is quantized: the Dense head holds a few hundred weights, and quantizing its
activations dynamically moved the output by up to 0.05 in a test, for no size or speed gain.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edge.errors import require

from .errors import ExportError

QUANTIZABLE_CELLS = ("lstm",)


def quantize_int8(model_bytes: bytes):
    """Dynamically quantized copy of a float ONNX model; returns an ``onnx.ModelProto``."""
    onnx = require("onnx", "train", "quantizing a model")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model_bytes)
        try:
            # reduce_range: 7-bit weights. Without it, x86 CPUs with AVX2 but no VNNI can saturate
            # the u8 x s8 products and give different probabilities from ARM (benchmarks/pi_check.sh:
            # up to 3.3e-3 apart on the samples for the trained LSTM, 0.066 with label flips for an
            # untrained one); with it, x86 and arm64 agree within 6e-8.
            quantize_dynamic(source, target, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["LSTM"], reduce_range=True)
        except Exception as exc:  # onnxruntime.quantization raises assorted errors
            raise ExportError(f"int8 quantization failed: {exc}") from exc
        return onnx.load(target)
