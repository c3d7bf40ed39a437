"""A framework-free description of a trained gvd network: layer layout plus NumPy weights.

Reading the Keras model once into this plain structure keeps the ONNX builder independent of Keras
(and of tf2onnx), so the native export keeps working when those tools move; it also lets the
builder be tested without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.metadata import CELLS

POOLINGS = ("last", "mean", "meanmax")


@dataclass(frozen=True)
class CellWeights:
    """Weights of one direction of a recurrent layer, in Keras layout.

    kernel: (inputs, G*units); recurrent: (units, G*units); bias: (G*units,) or, for a GRU with
    reset_after, (2, 3*units) = [input bias, recurrent bias]. G = 4 (LSTM i,f,c,o), 3 (GRU z,r,h), 1 (RNN).
    """

    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class RecurrentSpec:
    cell: str
    units: int
    directions: tuple[CellWeights, ...]  # (forward,) or (forward, backward)
    return_sequences: bool

    @property
    def bidirectional(self) -> bool:
        return len(self.directions) == 2

    @property
    def output_size(self) -> int:
        return self.units * len(self.directions)


@dataclass(frozen=True)
class DenseSpec:
    kernel: np.ndarray  # (inputs, outputs)
    bias: np.ndarray  # (outputs,)
    activation: str  # "relu" | "sigmoid"


@dataclass(frozen=True)
class NetworkSpec:
    n_inputs: int
    recurrent: tuple[RecurrentSpec, ...]
    pooling: str
    dense: tuple[DenseSpec, ...] = field(default_factory=tuple)
    # The p_speech output: a 1-unit sigmoid Dense reading what the last (p_female) Dense layer reads.
    speech: DenseSpec | None = None
    # Fixed input standardisation (x - mean) / std per feature, before the recurrent layers.
    input_mean: np.ndarray | None = None
    input_std: np.ndarray | None = None

    @property
    def cell(self) -> str:
        return self.recurrent[0].cell

    def parameter_count(self) -> int:
        arrays = [a for r in self.recurrent for d in r.directions for a in (d.kernel, d.recurrent, d.bias)]
        arrays += [a for d in (*self.dense, *([self.speech] if self.speech else [])) for a in (d.kernel, d.bias)]
        return int(sum(a.size for a in arrays))

    def validate(self) -> None:
        """Check shapes and the layout the builder relies on; raise ValueError on the first problem."""
        if not self.recurrent:
            raise ValueError("the network has no recurrent layer")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        size = self.n_inputs
        for index, layer in enumerate(self.recurrent):
            last = index == len(self.recurrent) - 1
            _check_recurrent(index, layer, size, wants_sequences=(not last) or self.pooling != "last")
            size = layer.output_size
        size = size * 2 if self.pooling == "meanmax" else size
        for index, dense in enumerate(self.dense):
            if index == len(self.dense) - 1 and self.speech is not None:
                _check_dense(index + 1, self.speech, size)
                if self.speech.activation != "sigmoid" or self.speech.kernel.shape[1] != 1:
                    raise ValueError("the p_speech output must be a 1-unit sigmoid Dense layer")
            _check_dense(index, dense, size)
            size = dense.kernel.shape[1]
        if not self.dense or self.dense[-1].activation != "sigmoid" or size != 1:
            raise ValueError("the network must end in a 1-unit sigmoid Dense layer")


_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _check_recurrent(index: int, layer: RecurrentSpec, size: int, wants_sequences: bool) -> None:
    if layer.cell not in CELLS:
        raise ValueError(f"layer {index}: unknown cell {layer.cell!r}")
    if layer.return_sequences != wants_sequences:
        raise ValueError(f"layer {index}: return_sequences={layer.return_sequences} does not fit "
                         f"{'the next layer' if wants_sequences else 'last-step pooling'}")
    g, h = _GATES[layer.cell], layer.units
    bias_shape = (2, 3 * h) if layer.cell == "gru" else (g * h,)
    expected = {"kernel": (size, g * h), "recurrent": (h, g * h), "bias": bias_shape}
    for weights in layer.directions:
        for name, shape in expected.items():
            actual = getattr(weights, name).shape
            if actual != shape:
                raise ValueError(f"layer {index} ({layer.cell}): {name} has shape {actual}, expected {shape}")


def _check_dense(index: int, dense: DenseSpec, size: int) -> None:
    if dense.kernel.shape[0] != size or dense.bias.shape != (dense.kernel.shape[1],):
        raise ValueError(f"dense layer {index}: kernel {dense.kernel.shape} / bias {dense.bias.shape} "
                         f"do not follow an input of size {size}")
    if dense.activation not in ("relu", "sigmoid"):
        raise ValueError(f"dense layer {index}: unsupported activation {dense.activation!r}")
