"""Synthetic test signals, defined once for every test module."""

from __future__ import annotations

import numpy as np


def voice(f0: float = 200.0, seconds: float = 4.0, sample_rate: int = 16000, level: float = 0.1,
          seed: int = 0, harmonics: int = 14, noise: float = 0.0) -> np.ndarray:
    """A speech-like test signal: a harmonic tone with gliding pitch, in syllables with short gaps.

    ``noise`` adds white breath noise at that amplitude (relative to full scale).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    syllables = (np.sin(2 * np.pi * 2.5 * t + rng.uniform(0, np.pi)) > -0.3).astype(float)
    signal = level * tone * syllables
    if noise:
        signal = signal + noise * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """1/f^exponent noise with unit RMS: 0 white, 1 pink, 2 brown (rumble)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    y = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return y / np.sqrt(np.mean(y**2))
