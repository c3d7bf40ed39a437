"""Feature extraction through edge.pipeline, the on-disk cache, and equal-length batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from edge.audio import load_audio
from edge.pipeline import window_inputs
from edge.settings import FeatureSettings
from train.augment import AugmentConfig
from train.config import apply_overrides, preset
from train.data import Recording, load_corpora
from train.dataset import cache_key, code_fingerprint, extract
from train.train import BatchMaker, TrainSet

SETTINGS = FeatureSettings(vad=False)


def _make_corpus(root: Path, rng: np.random.Generator) -> Path:
    for label, f0 in (("female", 220.0), ("male", 110.0)):
        for i in range(2):
            t = np.arange(int(16000 * (1.2 + 2.5 * i))) / 16000
            y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20)) * 0.05
            y = y + 0.005 * rng.standard_normal(t.size)
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / f"{label}{i}.wav", y.astype(np.float32), 16000)
    return root


def test_clean_variant_equals_the_runtime_pipeline(tmp_path, rng):
    recs, _ = load_corpora([_make_corpus(tmp_path / "data", rng)])
    result = extract(recs, SETTINGS, variants=0, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert result.failed == []
    for index, rec in enumerate(recs):
        y, _ = load_audio(rec.path)
        expected = [w.features for w in window_inputs(y, SETTINGS) if w.features is not None]
        got = [f for f, r in zip(result.windows.features, result.windows.recording, strict=True) if r == index]
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_second_extraction_is_a_cache_hit_with_identical_features(tmp_path, rng):
    recs, _ = load_corpora([_make_corpus(tmp_path / "data", rng)])
    config = AugmentConfig(variants=1)
    first = extract(recs, SETTINGS, config, variants=1, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert first.computed == len(recs) and first.cache_hits == 0
    second = extract(recs, SETTINGS, config, variants=1, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert second.computed == 0 and second.cache_hits == 2 * len(recs)
    assert len(first.windows) == len(second.windows)
    for a, b in zip(first.windows.features, second.windows.features, strict=True):
        np.testing.assert_array_equal(a, b)
    # Augmented windows differ from clean ones.
    clean = [f for f, v in zip(first.windows.features, first.windows.variant, strict=True) if v == 0]
    noisy = [f for f, v in zip(first.windows.features, first.windows.variant, strict=True) if v == 1]
    assert noisy and not np.allclose(clean[0][: noisy[0].shape[0]], noisy[0][: clean[0].shape[0]])


def test_cache_key_depends_on_settings_augmentation_and_content():
    base = cache_key("a" * 64, SETTINGS, AugmentConfig(), 1, 0)
    assert base == cache_key("a" * 64, SETTINGS, AugmentConfig(), 1, 0)
    assert base != cache_key("b" * 64, SETTINGS, AugmentConfig(), 1, 0)
    assert base != cache_key("a" * 64, SETTINGS.with_changes(feature_norm="cmvn"), AugmentConfig(), 1, 0)
    assert base != cache_key("a" * 64, SETTINGS, AugmentConfig(p_noise=0.9), 1, 0)
    assert base != cache_key("a" * 64, SETTINGS, AugmentConfig(), 2, 0)
    # The clean variant does not depend on the augmentation recipe.
    assert cache_key("a" * 64, SETTINGS, AugmentConfig(), 0, 0) == \
        cache_key("a" * 64, SETTINGS, AugmentConfig(p_eq=0), 0, 3)


def test_code_fingerprint_follows_the_code_not_its_comments():
    code = '''"""Module."""

def level(x):
    """Docstring."""
    return x * 2  # a comment
'''
    reworded = code.replace("Module.", "The module, reworded.").replace("Docstring.", "Says more.") \
        .replace("# a comment", "# why: another comment").replace("x * 2", "x*2")
    assert code_fingerprint(code) == code_fingerprint(reworded)
    assert code_fingerprint(code) != code_fingerprint(code.replace("x * 2", "x * 3"))
    assert code_fingerprint(code) != code_fingerprint(code.replace("return x * 2", "y = x\n    return y * 2"))
    # A function that is only a docstring still parses, and differs from one that does something.
    only_doc = 'def f():\n    """Nothing."""\n'
    assert code_fingerprint(only_doc) == code_fingerprint("def f():\n    pass\n")
    assert code_fingerprint(only_doc) != code_fingerprint("def f():\n    return 1\n")


def test_batches_have_one_length_and_balanced_strata(tmp_path, rng):
    recs, _ = load_corpora([_make_corpus(tmp_path / "data", rng)])
    result = extract(recs, SETTINGS, variants=0, cache_dir=tmp_path / "cache", workers=1, progress=False)
    data = TrainSet.build(result.windows, recs, range(len(recs)))
    config = apply_overrides(preset("default"), {"features": {"vad": False}, "batch_size": 16, "steps_per_epoch": 20})
    maker = BatchMaker(data, config, np.random.default_rng(0))
    labels, lengths = [], set()
    for x, y, _ in maker.epoch():
        assert x.ndim == 3 and x.shape[0] == 16 and x.shape[2] == SETTINGS.n_features
        assert np.all(np.isfinite(x))
        assert config.crop_min_frames - 4 <= x.shape[1] <= config.crop_max_frames
        labels.append(y)
        lengths.add(x.shape[1])
    assert 0.35 < np.concatenate(labels).mean() < 0.65
    assert len(lengths) > 1  # random crop lengths


def test_original_recipe_batches_without_crops(tmp_path, rng):
    recs, _ = load_corpora([_make_corpus(tmp_path / "data", rng)])
    result = extract(recs, SETTINGS, variants=0, cache_dir=tmp_path / "cache", workers=1, progress=False)
    data = TrainSet.build(result.windows, recs, range(len(recs)))
    maker = BatchMaker(data, preset("original"), np.random.default_rng(0))
    seen = sum(x.shape[0] for x, _, _ in maker.epoch())
    assert seen == len(data)  # one plain pass over every window


def test_worker_processes_give_the_same_features(tmp_path, rng):
    recs, _ = load_corpora([_make_corpus(tmp_path / "data", rng)])
    config = AugmentConfig(variants=1)
    one = extract(recs, SETTINGS, config, variants=1, cache_dir=tmp_path / "c1", workers=1, progress=False)
    two = extract(recs, SETTINGS, config, variants=1, cache_dir=tmp_path / "c2", workers=2, progress=False)
    assert two.computed == len(recs) and len(one.windows) == len(two.windows)
    for a, b in zip(one.windows.features, two.windows.features, strict=True):
        np.testing.assert_array_equal(a, b)


def test_spec_augment_masks_zero_spans_only_when_asked(tmp_path, rng):
    recs, _ = load_corpora([_make_corpus(tmp_path / "data", rng)])
    result = extract(recs, SETTINGS, variants=0, cache_dir=tmp_path / "cache", workers=1, progress=False)
    data = TrainSet.build(result.windows, recs, range(len(recs)))
    plain = apply_overrides(preset("default"), {"features": {"vad": False}, "batch_size": 8, "steps_per_epoch": 4})
    masked = apply_overrides(plain, {"time_masks": 2, "mask_frames": 8, "coefficient_masks": 1, "mask_coefficients": 2})

    def zero_columns(config) -> int:
        batches = list(BatchMaker(data, config, np.random.default_rng(0)).epoch())
        return sum(int(np.sum(np.all(x == 0, axis=1))) for x, _, _ in batches)

    assert zero_columns(plain) == 0
    assert zero_columns(masked) > 0


def test_flat_envelopes_are_never_the_same_audio_and_raise_no_warning():
    import warnings

    from train.dataset import find_same_audio

    recs = [Recording(Path(f"/d/c/{i}.flac"), "nonspeech", f"s{i}", "c") for i in range(3)]
    rng = np.random.default_rng(0)
    shaped = rng.normal(size=200)
    envelopes = {0: np.zeros(200), 1: np.zeros(200), 2: shaped}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_same_audio(recs, envelopes) == []
    envelopes[1] = shaped + 0.01 * rng.normal(size=200)
    assert find_same_audio(recs, envelopes) == [(recs[1].key, recs[2].key)]
