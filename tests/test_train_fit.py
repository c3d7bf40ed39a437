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
    return TrainSet(windows, y, strata, corpus.astype(np.int64), np.ones(4, dtype=bool), np.full(4, 10.0),
                    np.zeros(n, dtype=bool))


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


def _recording_set(corpora: dict[str, tuple[int, int]], nonspeech: int = 0):
    """Recordings (one file per speaker) of corpora given as {name: (women, men)}, plus non-speech clips,
    each with one window."""
    from pathlib import Path

    from train.data import Recording

    recs = []
    for name, (women, men) in corpora.items():
        recs += [Recording(Path(f"/x/{name}/f{i}.wav"), "female", f"f{i}", name) for i in range(women)]
        recs += [Recording(Path(f"/x/{name}/m{i}.wav"), "male", f"m{i}", name) for i in range(men)]
    recs += [Recording(Path(f"/x/ns/{i}.wav"), "nonspeech", f"n{i}", "nonspeech_x") for i in range(nonspeech)]
    windows = Windows([np.zeros((30, 4), np.float32)] * len(recs), [0.6] * len(recs), list(range(len(recs))),
                      [0] * len(recs))
    return recs, windows


def test_speaker_weighted_draws_follow_the_square_root_of_corpus_speakers():
    from train.train import BatchMaker

    recs, windows = _recording_set({"big": (8, 8), "tiny": (1, 1)}, nonspeech=5)
    data = TrainSet.build(windows, recs, range(len(recs)))
    config = apply_overrides(preset("default"), {"nonspeech_fraction": 0.2})
    p = BatchMaker(data, config, np.random.default_rng(0)).p
    corpus = np.array([r.corpus for r in recs])
    label = np.array([r.label for r in recs])
    assert p[corpus == "nonspeech_x"].sum() == pytest.approx(0.2)
    assert p[corpus == "big"].sum() / p[corpus == "tiny"].sum() == pytest.approx(np.sqrt(16 / 2))
    for name in ("big", "tiny"):  # the corpus says nothing about sex
        women, men = (corpus == name) & (label == "female"), (corpus == name) & (label == "male")
        assert p[women].sum() == pytest.approx(p[men].sum())
    equal = BatchMaker(data, apply_overrides(config, {"speaker_weighted": False}), np.random.default_rng(0)).p
    assert equal[corpus == "big"].sum() == pytest.approx(equal[corpus == "tiny"].sum())


def test_one_sex_corpora_teach_speech_but_not_sex():
    recs, windows = _recording_set({"both": (2, 2), "women_only": (3, 0)}, nonspeech=2)
    data = TrainSet.build(windows, recs, range(len(recs)))
    corpus = np.array([r.corpus for r in recs])
    gender = data.y_gender(single_sex_gender=False)
    assert np.all(gender[corpus == "women_only"] == -1) and np.all(gender[corpus == "nonspeech_x"] == -1)
    assert set(gender[corpus == "both"]) == {0.0, 1.0}
    assert np.all(data.y_speech[corpus == "women_only"] == 1)
    assert np.array_equal(data.y_gender(single_sex_gender=True), data.y)
