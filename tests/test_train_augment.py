"""Augmentation: shapes, finiteness, and that the band limit really removes the high band."""

from __future__ import annotations

import numpy as np
import pytest

from train.augment import (
    AugmentConfig,
    add_noise,
    augment,
    band_limit,
    codec_roundtrip,
    random_eq,
    synthetic_reverb,
)

SR = 16000


def _voice(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    """A harmonic-rich buzz with noise, energy up to 8 kHz."""
    t = np.arange(int(SR * seconds)) / SR
    y = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 50))
    return (0.1 * y + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _band_energy(y: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("cutoff", [3400.0, 4000.0, 7000.0])
def test_band_limit_removes_energy_above_the_cutoff(rng, cutoff):
    y = _voice(rng)
    out = band_limit(y, SR, cutoff)
    assert out.shape == y.shape and out.dtype == np.float32
    before = _band_energy(y, cutoff * 1.05, SR / 2)
    after = _band_energy(out, cutoff * 1.05, SR / 2)
    assert before > 0 and after < 1e-4 * before
    # The pass band survives.
    assert _band_energy(out, 100, cutoff * 0.8) > 0.9 * _band_energy(y, 100, cutoff * 0.8)


def test_noise_hits_the_requested_snr(rng):
    y = _voice(rng)
    out = add_noise(y, rng, snr_db=10.0, colour="white")
    noise = out - y
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.5


def test_reverb_and_eq_keep_length_and_level(rng):
    y = _voice(rng)
    for out in (synthetic_reverb(y, SR, rng, 0.5), random_eq(y, SR, rng, 8.0)):
        assert out.shape == y.shape and np.all(np.isfinite(out))
        assert 0.1 < np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(y**2)) < 10


def test_opus_roundtrip_is_aligned_and_band_limited(rng):
    y = _voice(rng)
    out = codec_roundtrip(y, SR, "opus", 12000)
    assert out.shape == y.shape
    assert np.corrcoef(y, out)[0, 1] > 0.8  # delay compensated
    # Low-rate Opus spends few bits on the top band: much of its energy is gone.
    assert _band_energy(out, 7000, 8000) < 0.5 * _band_energy(y, 7000, 8000)


def test_augment_is_deterministic_finite_and_keeps_shape(rng):
    y = _voice(rng)
    config = AugmentConfig(p_reverb=1, p_eq=1, p_noise=1, p_band_limit=1, p_codec=1, p_telephone=1)
    a = augment(y, SR, np.random.default_rng(5), config)
    b = augment(y, SR, np.random.default_rng(5), config)
    assert a.shape == y.shape and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, y)
    assert augment(np.zeros(0, np.float32), SR, rng, config).size == 0


def test_augment_config_round_trips_through_a_dict():
    config = AugmentConfig(variants=2, cutoffs_hz=(4000.0,))
    assert AugmentConfig.from_dict(config.to_dict()) == config
