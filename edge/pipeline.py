"""From 16 kHz mono samples to model inputs: one frame analysis, windows as slices of it.

Training, files and streams all go through :class:`FrameCursor`: audio arrives in blocks of any
size, every frame is analysed once (:func:`edge.features.analyse_frames`), and each analysis window
(3 s by default) is a slice of those frames, so overlapping windows share all the spectral work. A
window keeps only its speech frames (:func:`edge.vad.speech_mask`), normalises their cepstra and
appends the pitch columns. A window with less than ``min_speech_seconds`` of speech produces no
model input: silence never gets a gender.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .clean import spectral_gate
from .features import FrameStats, analyse_frames, dct_matrix, formant_columns, normalize_features, pitch_columns
from .settings import FeatureSettings
from .vad import speech_mask

LABELS = ("female", "male", "no_speech")
# Why a clip or window got no gender.
NO_SPEECH_REASONS = ("too_short", "silence", "not_speech")
# Stages of the runtime's per-clip timings, in order.
STAGES = ("decode", "resample", "frames", "speech", "inference")


@dataclass(frozen=True)
class WindowInput:
    first_frame: int  # absolute index of the window's first frame
    start: float  # seconds from the start of the signal
    end: float
    speech_seconds: float
    features: np.ndarray | None  # (speech frames, n_features) float32; None with too little speech
    speech_mask: np.ndarray  # per frame of the window: True where speech was found


def window_input(stats: FrameStats, settings: FeatureSettings) -> WindowInput:
    """Model input for the frames of one analysis window."""
    rate, hop = settings.sample_rate, settings.hop_length
    mask = speech_mask(stats, settings)
    n_speech = int(mask.sum())
    start = stats.start * hop / rate
    end = ((stats.start + len(stats) - 1) * hop + settings.frame_length) / rate if len(stats) else start
    features = None
    if n_speech >= settings.min_speech_frames:
        cepstra = stats.cepstra[mask]
        if settings.feature_norm == "none" and settings.rms_normalize:
            # Level the speech to the target RMS: a gain is a constant on every log-mel band.
            level = 10.0 * np.log10(np.mean(10.0 ** (stats.energy_db[mask] / 10.0)) + 1e-12)
            gain_db = settings.target_dbfs - level
            cepstra = cepstra + gain_db * dct_matrix(settings.n_mfcc, settings.n_mels).sum(axis=1)
        columns = [cepstra]
        if settings.pitch:
            columns.append(pitch_columns(stats, settings.vad_voicing)[mask])
        if settings.formants:
            columns.append(formant_columns(stats, settings.vad_voicing)[mask])
        features = normalize_window(np.concatenate(columns, axis=1), settings)
    return WindowInput(stats.start, start, end, n_speech * hop / rate, features, mask)


def normalize_window(features: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Normalise the cepstral columns over the window's frames; the pitch columns stay absolute.

    Training calls this again on random crops, so a crop looks like the input for a clip of that length.
    """
    n = settings.n_mfcc
    out = np.array(features, dtype=np.float32)
    out[:, :n] = normalize_features(out[:, :n], settings.feature_norm)
    return out


class FrameCursor:
    """Audio in blocks of any size -> frames analysed once -> analysis windows as soon as complete.

    Windows are ``window_frames`` long and end every ``step_frames``. For files and training the
    first window ends when it is full (``grow=False``), and :meth:`finish` adds one window moved
    back to end with the signal when the regular ones miss enough of its end. A stream
    (``grow=True``) gets a window at every step from the first, shorter ones included, because a
    live label cannot wait for a full window.
    """

    def __init__(self, settings: FeatureSettings, step_frames: int | None = None, window_frames: int | None = None,
                 grow: bool = False, timings: dict[str, float] | None = None):
        self.settings = settings
        self.window_frames = window_frames or settings.window_frames
        self.step_frames = step_frames or settings.window_hop_frames
        self.grow = grow
        self.timings = timings if timings is not None else {}
        self.samples = 0  # samples received
        self._pending = np.zeros(0, dtype=np.float32)  # samples from frame self._frames on
        self._frames = 0  # frames analysed so far
        self._stats = FrameStats.empty(0, settings.n_mfcc)  # frames some window may still need
        self._next_end = self.step_frames if grow else self.window_frames
        self._last_end = 0

    @property
    def frames(self) -> int:
        return self._frames

    def push(self, samples: np.ndarray) -> list[WindowInput]:
        """Add audio; returns the windows it completed."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.size == 0:
            return []
        tick = time.perf_counter()
        self.samples += samples.size
        if self.settings.noise_reduction:
            samples = spectral_gate(samples, self.settings.sample_rate)  # per block: the original recipe
        block = np.concatenate([self._pending, samples]) if self._pending.size else samples
        stats = analyse_frames(block, self.settings, start=self._frames)
        # A copy, so that the block itself is not kept alive by the few samples held back.
        self._pending = block[len(stats) * self.settings.hop_length :].copy()
        self._frames += len(stats)
        self._stats = FrameStats.join([self._stats, stats])
        self._add_time("frames", tick)
        windows = []
        while self._next_end <= self._frames:
            windows.append(self._window(self._next_end))
            self._next_end += self.step_frames
        self._forget()
        return windows

    def finish(self) -> list[WindowInput]:
        """End of input: the window over the end of the signal, if the regular ones left one."""
        n = self._frames
        if n == 0 or n <= self._last_end:
            return []
        if self._last_end == 0 or self.grow:
            return [self._window(n)]
        missed = n - self._last_end
        if missed >= min(self.step_frames, self.settings.min_speech_frames):
            return [self._window(n)]
        return []

    def _window(self, end: int) -> WindowInput:
        tick = time.perf_counter()
        self._last_end = end
        window = window_input(self._stats.rows(max(0, end - self.window_frames), end), self.settings)
        self._add_time("speech", tick)
        return window

    def _forget(self) -> None:
        """Drop frames that no future window can reach (bounded memory on hour-long input)."""
        keep_from = min(max(0, self._next_end - self.window_frames), max(0, self._frames - self.window_frames))
        if keep_from > self._stats.start:
            self._stats = self._stats.rows(keep_from, self._frames)
            self._stats = self._stats.copy()

    def _add_time(self, stage: str, tick: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - tick


def window_inputs(y: np.ndarray, settings: FeatureSettings, step_frames: int | None = None) -> list[WindowInput]:
    """Model inputs for every analysis window of a whole signal (training's entry point)."""
    cursor = FrameCursor(settings, step_frames=step_frames)
    return cursor.push(y) + cursor.finish()


class SpeechUnion:
    """Seconds of speech in a clip: the union of the windows' speech frames (windows overlap)."""

    def __init__(self, settings: FeatureSettings):
        self.frame_seconds = settings.frame_seconds
        self._start = 0  # absolute frame of self._mask[0]
        self._mask = np.zeros(0, dtype=bool)
        self._counted = 0

    def add(self, window: WindowInput) -> None:
        a, b = window.first_frame, window.first_frame + window.speech_mask.size
        if a > self._start:  # windows arrive in order of start: frames before a are final
            done = min(a, self._start + self._mask.size) - self._start
            self._counted += int(self._mask[:done].sum())
            self._mask, self._start = self._mask[done:], self._start + done
            if a > self._start:
                self._mask, self._start = np.zeros(0, dtype=bool), a
        if b - self._start > self._mask.size:
            self._mask = np.concatenate([self._mask, np.zeros(b - self._start - self._mask.size, dtype=bool)])
        self._mask[a - self._start : b - self._start] |= window.speech_mask

    def seconds(self) -> float:
        return (self._counted + int(self._mask.sum())) * self.frame_seconds


def aggregate(probabilities: np.ndarray, speech_seconds: np.ndarray) -> float:
    """Clip-level probability: the mean of window probabilities weighted by their speech."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.asarray(speech_seconds, dtype=np.float64)
    if probabilities.size == 0:
        raise ValueError("no speech windows to aggregate")
    if weights.sum() <= 0:
        return float(probabilities.mean())
    return float(np.average(probabilities, weights=weights))


def decide(p_female: float | None, threshold: float) -> tuple[str, float | None]:
    """Label and confidence from a probability; None means no speech was heard."""
    if p_female is None:
        return "no_speech", None
    if p_female >= threshold:
        return "female", float(p_female)
    return "male", float(1.0 - p_female)
