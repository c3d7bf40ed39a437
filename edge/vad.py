"""A cheap speech detector: loud enough, voiced (periodic at a speaking pitch), and alive.

Silence, hiss and room noise are not periodic between 70 and 500 Hz; speech is, for most of its
duration. Hum and buzz are periodic too, but hold pitch and level perfectly still; speech never does.
Frames are non-overlapping and the decision for a frame depends only on nearby samples plus the
analysis window's own noise floor, so files, streams and training see the same result.
"""

from __future__ import annotations

import numpy as np

from .settings import FeatureSettings

_MIN_PITCH_HZ = 70.0
_MAX_PITCH_HZ = 500.0
# A frame must stand this far above the quietest frames of its window (its noise floor).
_FLOOR_MARGIN_DB = 6.0
# A periodic sound that holds its pitch and level this long is a machine, not a voice.
_STEADY_SECONDS = 0.6


def frame_energy_db(frames: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)


def frame_voicing(frames: np.ndarray, sample_rate: int, return_lags: bool = False):
    """Peak normalised cross-correlation over pitch lags, per frame (1 = perfectly periodic).

    With ``return_lags``, also the lag of that peak in samples (the pitch period).
    """
    n = frames.shape[1]
    min_lag = max(1, int(sample_rate / _MAX_PITCH_HZ))
    max_lag = min(n // 2, int(sample_rate / _MIN_PITCH_HZ))
    # First difference whitens low-frequency rumble (brown noise correlates over long lags too).
    x = np.diff(frames, axis=1, prepend=frames[:, :1])
    x = x - x.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, nfft, axis=1)
    corr = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, nfft, axis=1)[:, min_lag : max_lag + 1]
    squares = np.square(x, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(squares, axis=1)], axis=1)
    lags = np.arange(min_lag, max_lag + 1)
    head_energy = cumulative[:, n - lags]  # sum of x[0 : n-lag]^2
    tail_energy = cumulative[:, n : n + 1] - cumulative[:, lags]  # sum of x[lag : n]^2
    nccf = corr / np.sqrt(head_energy * tail_energy + 1e-20)
    peak = nccf.max(axis=1)
    if return_lags:
        # The shortest lag that nearly reaches the peak: the period, not a multiple of it.
        best = np.argmax(nccf >= peak[:, None] - 0.05, axis=1)
        return peak, lags[best]
    return peak


def _steady_runs(lags: np.ndarray, energy_db: np.ndarray, min_frames: int) -> np.ndarray:
    """True on runs of at least ``min_frames`` consecutive frames whose pitch period and level hold still
    (a NaN period never matches, so it ends a run).

    A voice never holds its pitch to within 2 % and its level to within 3 dB for that long: its pitch
    glides and its level follows the syllables. Mains hum, fans and transformer buzz do exactly that.
    """
    n = lags.size
    steady = np.zeros(n, dtype=bool)
    start = 0
    for i in range(1, n + 1):
        # Extend the run while frame i stays close to the run's first frame.
        same_pitch = i < n and abs(lags[i] - lags[start]) <= max(1.0, 0.02 * lags[start])
        if same_pitch and abs(energy_db[i] - energy_db[start]) <= 3.0:
            continue
        if i - start >= min_frames:
            steady[start:i] = True
        start = i
    return steady


def speech_mask(y: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Boolean per frame of ``settings.vad_frame_length`` samples: True where speech is."""
    frame = settings.vad_frame_length
    n_frames = len(y) // frame
    if n_frames == 0:
        return np.zeros(0, dtype=bool)
    if not settings.vad:
        return np.ones(n_frames, dtype=bool)
    frames = np.asarray(y[: n_frames * frame], dtype=np.float32).reshape(n_frames, frame)
    energy = frame_energy_db(frames)
    floor = np.percentile(energy, 10)
    loud = (energy > settings.vad_energy_dbfs) & (energy > floor + _FLOOR_MARGIN_DB)
    # Voicing (two FFTs per frame) only where it can matter: quiet frames are never speech. Same
    # result as computing it everywhere (frames are independent); 2.5x faster on the bundled samples.
    voiced = np.zeros(n_frames, dtype=bool)
    if loud.any():
        voicing, lags = frame_voicing(frames[loud], settings.sample_rate, return_lags=True)
        is_voiced = voicing > settings.vad_voicing
        # A buzz that switches on after silence is loud and periodic; what gives it away is that it
        # never changes. Quiet frames (no lag: NaN) end a run.
        period = np.full(n_frames, np.nan)
        period[loud] = lags
        steady = _steady_runs(period, energy, int(round(_STEADY_SECONDS * settings.sample_rate / frame)))[loud]
        voiced[loud] = is_voiced & ~steady
    # Keep unvoiced consonants next to voiced frames, and drop isolated blips.
    frame_seconds = frame / settings.sample_rate
    hang = int(round(settings.vad_hangover_seconds / frame_seconds))
    if hang:
        kernel = np.ones(2 * hang + 1)
        # "full" then crop: mode="same" returns len(kernel) values when there are fewer frames.
        voiced = np.convolve(voiced.astype(float), kernel, mode="full")[hang : hang + n_frames] > 0
    voiced &= energy > settings.vad_energy_dbfs
    return _drop_short_regions(voiced, int(round(settings.vad_min_region_seconds / frame_seconds)))


def _drop_short_regions(mask: np.ndarray, min_frames: int) -> np.ndarray:
    if min_frames <= 1 or not mask.any():
        return mask
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out = mask.copy()
    for start, end in zip(starts, ends):
        if end - start < min_frames:
            out[start:end] = False
    return out


def speech_samples(y: np.ndarray, settings: FeatureSettings, mask: np.ndarray | None = None) -> np.ndarray:
    """The samples of ``y`` that lie in speech frames, joined; the whole signal when VAD is off.

    ``mask`` is :func:`speech_mask` of ``y`` when the caller has already computed it.
    """
    if not settings.vad:
        return np.asarray(y, dtype=np.float32)
    if mask is None:
        mask = speech_mask(y, settings)
    if not mask.any():
        return np.zeros(0, dtype=np.float32)
    frame = settings.vad_frame_length
    frames = np.asarray(y[: mask.size * frame], dtype=np.float32).reshape(mask.size, frame)
    return frames[mask].reshape(-1)
