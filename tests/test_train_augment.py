"""Augmentation: shapes, finiteness, and that the band limit really removes the high band."""

from __future__ import annotations

import numpy as np
import pytest

from train.augment import (
    AugmentConfig,
    add_noise,
    augment,
    band_limit,
    change_speed,
    codec_roundtrip,
    random_eq,
    shift_pitch,
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


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_change_scales_pitch_and_duration(factor):
    t = np.arange(SR) / SR
    y = np.sin(2 * np.pi * 200.0 * t).astype(np.float32)
    out = change_speed(y, SR, factor)
    assert abs(out.size - SR / factor) <= 2
    freqs = np.fft.rfftfreq(out.size, 1 / SR)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(out)))] - 200.0 * factor) < 2.0


def test_speed_off_draws_nothing_from_the_random_stream(rng):
    # p_speed=0 must not draw: models trained before the option existed stay reproducible. With every
    # transform off, augment() draws six "apply?" numbers and then the gain; replay that by hand.
    y = 0.01 * _voice(rng)
    config = AugmentConfig(p_speed=0.0, p_pitch=0.0, p_reverb=0, p_eq=0, p_noise=0, p_band_limit=0, p_codec=0,
                           p_telephone=0)
    replay = np.random.default_rng(9)
    replay.random(6)
    gain = 10.0 ** (replay.uniform(*config.gain_db) / 20.0)
    np.testing.assert_allclose(augment(y, SR, np.random.default_rng(9), config), y * gain, rtol=1e-6)
    faster = augment(y, SR, np.random.default_rng(9), AugmentConfig(p_speed=1.0, speed=(1.1, 1.1)))
    assert abs(faster.size - y.size / 1.1) <= 2


def _median_f0_and_envelope(y: np.ndarray) -> tuple[float, np.ndarray]:
    """Median F0 of the voiced frames (the runtime's pitch tracker) and the mean log-mel envelope."""
    from edge.features import analyse_frames
    from edge.settings import FeatureSettings

    stats = analyse_frames(y, FeatureSettings())
    voiced = stats.voicing > 0.5
    return float(np.median(stats.f0[voiced])), stats.cepstra[voiced, 1:8].mean(axis=0)


@pytest.mark.parametrize("octaves", [-0.5, 0.5])
def test_pitch_shift_moves_f0_and_keeps_the_envelope(octaves):
    pytest.importorskip("pyworld", reason="pyworld (the [train] extra) is not installed")
    # A vowel-like buzz: harmonics of 140 Hz shaped by two formant peaks the shift must leave in place.
    t = np.arange(2 * SR) / SR
    harmonics = np.arange(1, 50) * 140.0
    gains = np.exp(-((harmonics - 700.0) / 250.0) ** 2) + 0.5 * np.exp(-((harmonics - 2200.0) / 400.0) ** 2) + 0.02
    y = (0.1 * sum(g * np.sin(2 * np.pi * h * t) for g, h in zip(gains, harmonics, strict=True))).astype(np.float32)
    out = shift_pitch(y, SR, octaves)
    assert out.shape == y.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert np.sqrt(np.mean(out**2)) == pytest.approx(np.sqrt(np.mean(y**2)), rel=1e-3)
    f0, envelope = _median_f0_and_envelope(y)
    shifted_f0, shifted_envelope = _median_f0_and_envelope(out)
    assert np.log2(shifted_f0 / f0) == pytest.approx(octaves, abs=0.1)
    # The formants stay: the low cepstra (the envelope's broad shape) move far less than a speed
    # change of the same size moves them.
    sped = change_speed(y, SR, 2.0**octaves)
    _, sped_envelope = _median_f0_and_envelope(sped)
    assert np.linalg.norm(shifted_envelope - envelope) < 0.5 * np.linalg.norm(sped_envelope - envelope)


def test_pitch_shift_in_augment_is_seeded_and_off_by_default(rng):
    pytest.importorskip("pyworld", reason="pyworld (the [train] extra) is not installed")
    y = _voice(rng)
    config = AugmentConfig(p_pitch=1.0, pitch_octaves=(0.4, 0.4), p_reverb=0, p_eq=0, p_noise=0, p_band_limit=0,
                           p_codec=0, p_telephone=0)
    a = augment(y, SR, np.random.default_rng(3), config)
    np.testing.assert_array_equal(a, augment(y, SR, np.random.default_rng(3), config))
    f0, _ = _median_f0_and_envelope(y)
    assert np.log2(_median_f0_and_envelope(a)[0] / f0) == pytest.approx(0.4, abs=0.1)
    assert AugmentConfig().p_pitch == 0.0


def test_augment_config_round_trips_through_a_dict():
    config = AugmentConfig(variants=2, cutoffs_hz=(4000.0,), speed=(0.95, 1.05), pitch_octaves=(-0.5, 0.5))
    assert AugmentConfig.from_dict(config.to_dict()) == config
