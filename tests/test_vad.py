"""Speech detection: noise of every colour, hum and silence are never speech; real speech is."""

from __future__ import annotations

import numpy as np
import pytest

from edge.pipeline import window_inputs
from edge.settings import DEFAULT_SETTINGS
from edge.vad import frame_voicing, speech_mask, speech_samples

SR = 16000
LEVELS_DBFS = (-70, -50, -30, -20, -10)


def coloured_noise(rng, n: int, exponent: float) -> np.ndarray:
    """1/f^exponent noise: 0 white, 1 pink, 2 brown; unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    y = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return y / np.sqrt(np.mean(y**2))


def hum(n: int, f0: float, harmonics: int = 5) -> np.ndarray:
    t = np.arange(n) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, harmonics + 1))
    return y / np.sqrt(np.mean(y**2))


def room_noise(rng, n: int) -> np.ndarray:
    """Ventilation-like rumble with a slow level drift, plus a little mains hum."""
    y = coloured_noise(rng, n, 1.5) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * np.arange(n) / SR)) + 0.3 * hum(n, 50)
    return y / np.sqrt(np.mean(y**2))


def voiced(rng, seconds: float) -> np.ndarray:
    """Speech-like: harmonics of a gliding 120-220 Hz pitch, syllable-rate envelope, breath noise."""
    t = np.arange(int(seconds * SR)) / SR
    pitch = 170 + 50 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.1 * y + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


NOISES = {
    "silence": lambda rng, n: np.zeros(n),
    "white": lambda rng, n: coloured_noise(rng, n, 0),
    "pink": lambda rng, n: coloured_noise(rng, n, 1),
    "brown": lambda rng, n: coloured_noise(rng, n, 2),
    "hum50": lambda rng, n: hum(n, 50),
    "hum60": lambda rng, n: hum(n, 60),
    "hum100": lambda rng, n: hum(n, 100),
    "hum120": lambda rng, n: hum(n, 120),
    "room": room_noise,
}


@pytest.mark.parametrize("name", sorted(NOISES))
@pytest.mark.parametrize("level", LEVELS_DBFS)
@pytest.mark.parametrize("noise_reduction", [False, True], ids=["raw", "denoised"])
def test_noise_is_never_speech(rng, name, level, noise_reduction):
    settings = DEFAULT_SETTINGS.with_changes(noise_reduction=noise_reduction)
    y = (NOISES[name](rng, 10 * SR) * 10 ** (level / 20)).astype(np.float32)
    windows = window_inputs(y, settings)
    assert all(w.features is None for w in windows)
    assert speech_samples(y, settings).size < settings.min_speech_samples


@pytest.mark.parametrize("name", ["white", "pink", "brown", "hum50", "hum60", "room"])
def test_noise_starting_after_silence_is_not_speech(rng, name):
    y = NOISES[name](rng, 6 * SR) * 10 ** (-25 / 20)
    y[: int(1.5 * SR)] = 0.0
    assert all(w.features is None for w in window_inputs(y.astype(np.float32), DEFAULT_SETTINGS))


@pytest.mark.parametrize("f0", [100, 120, 150, 200])
def test_buzz_starting_after_silence(f0):
    # Loud and periodic at a speaking pitch, but perfectly steady: the steadiness test rejects it.
    y = hum(6 * SR, f0) * 10 ** (-25 / 20)
    y[: int(1.5 * SR)] = 0.0
    assert all(w.features is None for w in window_inputs(y.astype(np.float32), DEFAULT_SETTINGS))


def test_speech_over_a_steady_buzz_is_still_speech(rng):
    y = voiced(rng, 4.0)
    buzz = hum(y.size, 120) * np.sqrt(np.mean(y**2)) * 10 ** (-10 / 20)
    mixed = np.concatenate([np.zeros(SR // 2), y + buzz]).astype(np.float32)
    assert speech_samples(mixed, DEFAULT_SETTINGS).size > 3 * SR


def test_a_held_vowel_with_vibrato_is_speech(rng):
    # A sung or drawn-out vowel: pitch wobbles a few percent (vibrato) and the level swells.
    t = np.arange(3 * SR) / SR
    pitch = 220 * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.7 + 0.3 * np.sin(2 * np.pi * 1.5 * t))
    y = (0.1 * y + 0.002 * rng.standard_normal(t.size)).astype(np.float32)
    assert speech_samples(np.concatenate([np.zeros(SR // 2, np.float32), y]), DEFAULT_SETTINGS).size > 2 * SR


def test_voiced_signal_is_speech(rng):
    y = voiced(rng, 3.0)
    assert speech_samples(y, DEFAULT_SETTINGS).size > 2 * SR
    # ...also with noise underneath and after a pause
    quiet = np.concatenate([np.zeros(SR, np.float32), y]) + 0.005 * rng.standard_normal(4 * SR).astype(np.float32)
    mask = speech_mask(quiet, DEFAULT_SETTINGS)
    frames_per_second = SR / DEFAULT_SETTINGS.vad_frame_length
    assert mask[: int(0.8 * frames_per_second)].sum() == 0  # the leading pause
    assert mask[int(1.2 * frames_per_second):].mean() > 0.8


def test_voicing_separates_periodic_from_noise(rng):
    frames = np.stack([voiced(rng, 0.032)[:512], rng.standard_normal(512).astype(np.float32)])
    voicing = frame_voicing(frames, SR)
    assert voicing[0] > 0.8 and voicing[1] < 0.45


def test_vad_off_keeps_everything(rng):
    y = coloured_noise(rng, SR, 0).astype(np.float32)
    off = DEFAULT_SETTINGS.with_changes(vad=False)
    np.testing.assert_array_equal(speech_samples(y, off), y)
    assert speech_mask(y, off).all()


def test_short_inputs():
    assert speech_mask(np.zeros(100, np.float32), DEFAULT_SETTINGS).size == 0
    assert speech_samples(np.zeros(100, np.float32), DEFAULT_SETTINGS).size == 0


@pytest.mark.shared
@pytest.mark.parametrize("noise_reduction", [False, True], ids=["raw", "denoised"])
@pytest.mark.parametrize("corpus,step", [("indonesian", 2), ("ravdess", 7), ("urdu", 2)])
def test_real_speech_is_found(shared_data, corpus, step, noise_reduction):
    """At least 97 % of the clips yield a window with >= 0.5 s of speech (measured on all files:
    indonesian 102/102, ravdess 1421/1434, urdu 399/400)."""
    settings = DEFAULT_SETTINGS.with_changes(noise_reduction=noise_reduction)
    from edge.audio import AUDIO_EXTENSIONS, load_audio

    step *= 3 if noise_reduction else 1  # the gate costs ~15 ms per window: a smaller sample
    files = sorted(p for p in (shared_data / corpus).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)[::step]
    missed = []
    for path in files:
        y, _ = load_audio(path)
        if not any(w.features is not None for w in window_inputs(y, settings)):
            missed.append(path.name)
    recall = 1 - len(missed) / len(files)
    print(f"{corpus}: {len(files) - len(missed)}/{len(files)} clips with speech; missed {missed}")
    assert recall >= 0.97, missed
