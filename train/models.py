r"""Keras architectures for the three recurrent cells. The export step relies on this exact layout.

Layout (names matter to the exporter):
    Input "features" (batch, time, n_features)
    -> ``layers`` recurrent layers "rnn_0".."rnn_{k-1}" (LSTM / GRU / SimpleRNN, tanh, sigmoid gates,
       GRU reset_after=True), each optionally Bidirectional; all but the last return sequences,
       the last returns sequences too when pooling is "mean" or "meanmax"
    -> pooling over time: "last" (final state), "mean", or "meanmax" (concat of mean and max)
    -> Dropout -> optional Dense "hidden" (ReLU) -> Dense "p_female" (1, sigmoid)
                                                 \-> Dense "p_speech" (1, sigmoid), when ``speech_head``
``p_speech`` is the probability that the window is speech at all (music, animals and alarms that
passed the cheap speech detector get a low one); ``p_female`` is trained on speech windows only.
No masking: batches hold windows of one length, and the time axis stays dynamic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edge.metadata import CELLS

POOLINGS = ("last", "mean", "meanmax")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "gru"
    units: int = 64
    layers: int = 1
    bidirectional: bool = False
    pooling: str = "last"
    dense_units: int = 0
    dropout: float = 0.2
    n_features: int = 13
    speech_head: bool = False

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.layers < 1 or self.units < 1:
            raise ValueError("layers and units must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: ModelConfig, input_mean=None, input_std=None):
    """A compiled-ready (uncompiled) Keras model for ``config``.

    With ``input_mean`` / ``input_std`` (per feature, from the training windows) the model first
    standardises its input, fixed: cepstra run to hundreds while the pitch columns stay near 1, and
    unscaled the network learns to ignore the small ones.
    """
    import keras
    from keras import layers

    cell_class = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}[config.cell]
    inputs = keras.Input(shape=(None, config.n_features), name="features", dtype="float32")
    x = inputs
    if input_mean is not None and input_std is not None:
        x = layers.Normalization(axis=-1, mean=input_mean, variance=input_std**2, name="standardize")(x)
    for index in range(config.layers):
        last = index == config.layers - 1
        return_sequences = (not last) or config.pooling != "last"
        kwargs = {"units": config.units, "return_sequences": return_sequences}
        if config.cell == "gru":
            kwargs["reset_after"] = True
        recurrent = cell_class(**kwargs, name=f"rnn_{index}_cell" if config.bidirectional else f"rnn_{index}")
        x = layers.Bidirectional(recurrent, name=f"rnn_{index}")(x) if config.bidirectional else recurrent(x)
    if config.pooling == "mean":
        x = layers.GlobalAveragePooling1D(name="pool")(x)
    elif config.pooling == "meanmax":
        x = layers.Concatenate(name="pool")(
            [layers.GlobalAveragePooling1D(name="pool_mean")(x), layers.GlobalMaxPooling1D(name="pool_max")(x)]
        )
    x = layers.Dropout(config.dropout, name="dropout")(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="p_female")(x)
    if config.speech_head:
        outputs = [outputs, layers.Dense(1, activation="sigmoid", name="p_speech")(x)]
    return keras.Model(inputs, outputs, name=f"gvd_{config.cell}")


def weight_bytes(model) -> int:
    """Size of the model's weights as float32."""
    return 4 * int(sum(w.size for w in model.get_weights()))


# The original project's network: one 64-unit layer, Dropout 0.2, sigmoid on the last state.
ORIGINAL_CONFIG = {cell: ModelConfig(cell=cell, units=64, layers=1, pooling="last", dropout=0.2) for cell in CELLS}
