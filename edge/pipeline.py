"""From 16 kHz mono samples to model inputs, window by window. Training and the runtime both call this.

Each analysis window (3 s by default) is denoised if the settings say so, reduced to its speech
frames, levelled and pre-emphasised, and turned into normalised MFCCs. A window with less than
``min_speech_seconds`` of speech produces no model input: silence never gets a gender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clean import denoise, level_and_emphasise
from .features import window_features
from .settings import FeatureSettings
from .vad import speech_samples


@dataclass(frozen=True)
class WindowInput:
    start: float  # seconds from the start of the signal
    end: float
    speech_seconds: float
    features: np.ndarray | None  # (frames, n_mfcc) float32, None when the window holds too little speech


def window_starts(n_samples: int, settings: FeatureSettings) -> list[int]:
    """Start offsets of the analysis windows; the last window is moved back to end with the signal."""
    size, hop = settings.window_samples, settings.window_hop_samples
    if n_samples <= size:
        return [0]
    starts = list(range(0, n_samples - size + 1, hop))
    if starts[-1] + size < n_samples:
        starts.append(n_samples - size)
    return starts


def window_input(segment: np.ndarray, settings: FeatureSettings, start: float = 0.0) -> WindowInput:
    """Model input for one window of audio (at most ``window_seconds`` long)."""
    rate = settings.sample_rate
    speech = speech_samples(denoise(segment, settings), settings)
    end = start + len(segment) / rate
    if speech.size < settings.min_speech_samples:
        return WindowInput(start, end, speech.size / rate, None)
    features = window_features(level_and_emphasise(speech, settings), settings)
    return WindowInput(start, end, speech.size / rate, features)


def window_inputs(y: np.ndarray, settings: FeatureSettings, offset: float = 0.0) -> list[WindowInput]:
    """Model inputs for every analysis window of a signal."""
    size, rate = settings.window_samples, settings.sample_rate
    return [
        window_input(y[start : start + size], settings, offset + start / rate)
        for start in window_starts(len(y), settings)
    ]


def aggregate(probabilities: np.ndarray, speech_seconds: np.ndarray) -> float:
    """Clip-level probability: the mean of window probabilities weighted by their speech."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.asarray(speech_seconds, dtype=np.float64)
    if probabilities.size == 0:
        raise ValueError("no speech windows to aggregate")
    if weights.sum() <= 0:
        return float(probabilities.mean())
    return float(np.average(probabilities, weights=weights))
