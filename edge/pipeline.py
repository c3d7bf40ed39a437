"""From 16 kHz mono samples to model inputs, window by window. Training and the runtime both call this.

Each analysis window (3 s by default) is denoised if the settings say so, reduced to its speech
frames, levelled and pre-emphasised, and turned into normalised MFCCs. A window with less than
``min_speech_seconds`` of speech produces no model input: silence never gets a gender.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .clean import denoise, level_and_emphasise
from .features import window_features
from .settings import FeatureSettings
from .vad import speech_mask, speech_samples


@dataclass(frozen=True)
class WindowInput:
    start: float  # seconds from the start of the signal
    end: float
    speech_seconds: float
    features: np.ndarray | None  # (frames, n_mfcc) float32, None when the window holds too little speech
    # Per VAD frame (settings.vad_frame_length samples from start): True where speech was found;
    # None when speech detection is off (the whole window counts as speech).
    speech_mask: np.ndarray | None = None


def window_starts(n_samples: int, settings: FeatureSettings) -> list[int]:
    """Start offsets of the analysis windows; a last window is moved back to end with the signal.

    That last window is added only when the regular windows miss at least ``min_speech_seconds`` of
    the end (less could not be judged on its own): a 4.06 s clip would otherwise get a third window
    60 ms after the second, a near-copy that costs a third of the clip's compute for no information.
    """
    size, hop = settings.window_samples, settings.window_hop_samples
    if n_samples <= size:
        return [0]
    starts = list(range(0, n_samples - size + 1, hop))
    if n_samples - (starts[-1] + size) >= min(hop, settings.min_speech_samples):
        starts.append(n_samples - size)
    return starts


def window_input(
    segment: np.ndarray, settings: FeatureSettings, start: float = 0.0, timings: dict[str, float] | None = None
) -> WindowInput:
    """Model input for one window of audio (at most ``window_seconds`` long).

    ``timings``, when given, accumulates seconds spent under "clean" (denoise, speech detection,
    levelling) and "features" (MFCC), for the runtime's per-stage report.
    """
    rate = settings.sample_rate
    t0 = time.perf_counter()
    denoised = denoise(segment, settings)
    # Detect speech on the raw window: the gate's "musical noise" residue is bursty and tonal, and
    # made the detector call gated pink/brown noise speech (6-18 of 192 windows, measured).
    mask = speech_mask(segment, settings) if settings.vad else None
    speech = speech_samples(denoised, settings, mask)
    end = start + len(segment) / rate
    if speech.size < settings.min_speech_samples:
        if timings is not None:
            timings["clean"] = timings.get("clean", 0.0) + time.perf_counter() - t0
        return WindowInput(start, end, speech.size / rate, None, mask)
    cleaned = level_and_emphasise(speech, settings)
    t1 = time.perf_counter()
    features = window_features(cleaned, settings)
    if timings is not None:
        timings["clean"] = timings.get("clean", 0.0) + t1 - t0
        timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t1
    return WindowInput(start, end, speech.size / rate, features, mask)


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
