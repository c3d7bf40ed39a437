"""Training can favour the windows where pitch cannot tell the sexes apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.settings import FeatureSettings
from train.config import apply_overrides, preset
from train.data import load_corpora
from train.dataset import extract
from train.train import BatchMaker, TrainSet, in_pitch_overlap

SETTINGS = FeatureSettings(vad=False)

def _voice(f0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20)) * 0.05
    return (y + 0.005 * rng.standard_normal(t.size)).astype(np.float32)

def _corpus(root: Path, rng: np.random.Generator) -> Path:
    # One woman and one man in each sex's usual range, one of each where the ranges overlap.
    for label, pitches in (("female", (230.0, 165.0)), ("male", (110.0, 205.0))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for f0 in pitches:
            sf.write(root / label / f"{label}_{f0:.0f}.wav", _voice(f0, 3.5, rng), 16000)
    return root

@pytest.fixture
def recordings(tmp_path, rng):
    return load_corpora([_corpus(tmp_path / "data", rng)])[0]


@pytest.fixture
def train_set(tmp_path, recordings) -> TrainSet:
    result = extract(recordings, SETTINGS, variants=0, cache_dir=tmp_path / "cache", workers=1, progress=False)
    return TrainSet.build(result.windows, recordings, range(len(recordings)))

def test_overlap_windows_are_the_low_woman_and_the_high_man(train_set, recordings):
    overlap = in_pitch_overlap(train_set, SETTINGS)
    names = [Path(recordings[r].path).stem for r in train_set.windows.recording]
    np.testing.assert_array_equal(overlap, [name in ("female_165", "male_205") for name in names])

def test_overlap_weight_favours_overlap_windows_within_each_stratum(train_set):
    base = apply_overrides(preset("default"), {"features": {"vad": False}})
    favoured = apply_overrides(base, {"overlap_weight": 3.0})
    p0 = BatchMaker(train_set, base, np.random.default_rng(0)).p
    p1 = BatchMaker(train_set, favoured, np.random.default_rng(0)).p
    overlap = in_pitch_overlap(train_set, SETTINGS)
    for stratum in np.unique(train_set.strata):
        members = train_set.strata == stratum
        assert p1[members].sum() == pytest.approx(p0[members].sum())  # each stratum keeps its share
        inside, outside = p1[members & overlap], p1[members & ~overlap]
        if inside.size and outside.size:
            assert inside.max() / outside.max() == pytest.approx(3.0 * p0[members & overlap].max()
                                                                  / p0[members & ~overlap].max())

def test_overlap_weight_needs_a_positive_weight_and_the_pitch_columns(train_set):
    config = apply_overrides(preset("default"), {"features": {"vad": False}, "overlap_weight": 0.0})
    with pytest.raises(ValueError, match="overlap_weight"):
        BatchMaker(train_set, config, np.random.default_rng(0))


def test_overlap_weight_without_balanced_draws_is_refused(train_set):
    config = apply_overrides(preset("default"), {"features": {"vad": False}, "overlap_weight": 3.0, "balance": False})
    with pytest.raises(ValueError, match="balance"):
        BatchMaker(train_set, config, np.random.default_rng(0))
