"""edge.features.mfcc must equal librosa.feature.mfcc (what the original project trained on)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edge.features import mel_filterbank, mel_power, mfcc, normalize_features, window_features
from edge.settings import DEFAULT_SETTINGS

TOLERANCE = 1e-3  # absolute, on MFCC values of order 1-500


def librosa_mfcc(y: np.ndarray, sr: int = 16000, **kwargs) -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft too large for input" on the short cases
        return librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13, n_fft=2048, hop_length=512, **kwargs).T


@pytest.mark.parametrize("length", [1, 2, 511, 512, 513, 2047, 2048, 2049, 8000, 48000, 48001])
def test_matches_librosa_on_any_length(rng, length):
    y = (0.1 * rng.standard_normal(length)).astype(np.float32)
    ours = mfcc(y)
    ref = librosa_mfcc(y)
    assert ours.shape == ref.shape == (1 + length // 512, 13)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=TOLERANCE, rtol=0)


def test_matches_librosa_on_tones_and_silence():
    t = np.arange(48000) / 16000
    chirp = (0.5 * np.sin(2 * np.pi * (100 + 1000 * t) * t)).astype(np.float32)
    for y in (chirp, np.zeros(48000, np.float32), np.full(3000, 0.25, np.float32)):
        np.testing.assert_allclose(mfcc(y), librosa_mfcc(y), atol=TOLERANCE, rtol=0)


def test_other_rates_and_fmax(rng):
    y = (0.1 * rng.standard_normal(22050)).astype(np.float32)
    ours = mfcc(y, sr=22050, fmax=8000.0)
    np.testing.assert_allclose(ours, librosa_mfcc(y, sr=22050, fmax=8000.0), atol=TOLERANCE, rtol=0)


def test_empty_signal_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        mfcc(np.zeros(0, np.float32))


def test_sparse_mel_projection_equals_dense(rng):
    power = rng.random((7, 1025))
    dense = power @ mel_filterbank(16000, 2048, 128).T
    np.testing.assert_allclose(mel_power(power, 16000, 2048, 128), dense, rtol=1e-12)
    # A filter bank with empty filters (too many mels for the FFT size) falls back to the matmul.
    power = rng.random((3, 129))
    np.testing.assert_allclose(mel_power(power, 16000, 256, 128), power @ mel_filterbank(16000, 256, 128).T,
                               rtol=1e-12)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    np.testing.assert_allclose(mel_filterbank(16000, 2048, 128), librosa.filters.mel(sr=16000, n_fft=2048),
                               atol=1e-7)


def test_normalisation_modes(rng):
    feats = rng.standard_normal((94, 13)).astype(np.float32) * 5 + 3
    assert normalize_features(feats, "none") is feats
    cmn = normalize_features(feats, "cmn")
    np.testing.assert_allclose(cmn.mean(axis=0), 0, atol=1e-5)
    cmvn = normalize_features(feats, "cmvn")
    np.testing.assert_allclose(cmvn.std(axis=0), 1, atol=1e-3)


def test_window_features_shape(rng):
    y = (0.1 * rng.standard_normal(48000)).astype(np.float32)
    feats = window_features(y, DEFAULT_SETTINGS)
    assert feats.shape == (94, DEFAULT_SETTINGS.n_mfcc) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def _sample(shared_data, corpus: str, step: int):
    from edge.audio import AUDIO_EXTENSIONS

    files = sorted(p for p in (shared_data / corpus).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    return files[::step]


@pytest.mark.shared
@pytest.mark.parametrize("corpus,step", [("indonesian", 6), ("ravdess", 60), ("urdu", 20)])
def test_matches_librosa_on_real_speech(shared_data, corpus, step):
    from edge.audio import load_audio

    files = _sample(shared_data, corpus, step)
    assert len(files) >= 15
    worst = 0.0
    for path in files:
        y, _ = load_audio(path)
        diff = float(np.abs(mfcc(y) - librosa_mfcc(y)).max())
        worst = max(worst, diff)
        assert diff <= TOLERANCE, f"{path.name}: max abs diff {diff}"
    print(f"{corpus}: {len(files)} files, max abs diff {worst:.2e}")
