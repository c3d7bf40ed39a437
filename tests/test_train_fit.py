"""fit(): the optional corpus-adversarial head trains alongside and is left out of the kept model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from train.config import apply_overrides, preset  # noqa: E402
from train.dataset import Windows  # noqa: E402
from train.models import build_model  # noqa: E402
from train.train import TrainSet, fit  # noqa: E402


def _toy_set(rng: np.random.Generator, n: int = 128) -> TrainSet:
    """Two corpora; "female" windows carry an alternating pattern in one coefficient (it survives CMN)."""
    y = np.tile([0.0, 1.0], n // 2).astype(np.float32)
    corpus = np.repeat([0, 1], n // 2)
    features = []
    width = preset("default").features.n_features
    for label, source in zip(y, corpus, strict=True):
        x = 0.3 * rng.standard_normal((40, width)).astype(np.float32)
        x[:, 2] += 1.5 * label * (-1.0) ** np.arange(40)
        x[:, 5] += 0.5 * source  # a corpus marker for the adversary to find
        features.append(x)
    windows = Windows(features, [1.3] * n, list(range(n)), [0] * n)
    strata = (2 * corpus + y).astype(np.int64)
    return TrainSet(windows, y, strata, corpus.astype(np.int64), np.ones(4, dtype=bool))


@pytest.mark.slow
def test_adversarial_training_learns_and_keeps_only_the_gender_model(rng):
    data = _toy_set(rng)
    config = apply_overrides(preset("default"), {"epochs": 4, "steps_per_epoch": 12, "batch_size": 32,
                                                 "crop_min_frames": 40, "crop_max_frames": 40,
                                                 "adversarial": 0.5, "nonspeech_fraction": 0.0})
    result = fit(config, "gru", data, data, progress=False)
    plain = build_model(config.model_config("gru"))
    # The trained model also standardises its input (a fixed first layer built from the training data).
    assert [layer.name for layer in result.model.layers if layer.name != "standardize"] == [
        layer.name for layer in plain.layers]
    assert [w.shape for w in result.model.get_weights()] == [w.shape for w in plain.get_weights()]
    assert np.all(np.isfinite(result.history["loss"]))
    assert result.history["val_accuracy"][-1] > 0.9
