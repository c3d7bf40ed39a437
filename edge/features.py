"""MFCCs in pure NumPy, numerically matching ``librosa.feature.mfcc``.

Written by hand rather than depending on librosa because librosa pulls in numba, scipy and
scikit-learn (hundreds of MB and seconds of import time) that an edge device should not carry.
The filter bank and DCT matrices are built once per parameter set and cached.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .settings import FeatureSettings


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False)."""
    freqs = np.asanyarray(freqs, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freqs / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = freqs >= min_log_hz
    mels = np.where(log_t, min_log_mel + np.log(np.maximum(freqs, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    return np.where(log_t, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular filters, shape (n_mels, 1 + n_fft // 2), like librosa.filters.mel."""
    if fmax is None:
        fmax = sr / 2.0
    fftfreqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=8)
def _sparse_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None):
    """The filter bank's non-zero weights grouped by filter, or None when a filter is empty.

    Each triangle spans only a few FFT bins (about 2,000 of 131,000 weights are non-zero at the
    defaults). Gathering those bins takes about as long as the dense matmul on an idle machine
    (0.8 ms per 3 s window either way, measured), but does not depend on a multi-threaded BLAS,
    which stalled for tens of milliseconds on a busy 2-core device.
    """
    weights = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    rows, cols = np.nonzero(weights)
    if np.unique(rows).size != n_mels:
        return None  # np.add.reduceat cannot express an empty group
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    values = weights[rows, cols]
    for array in (cols, starts, values):
        array.setflags(write=False)
    return cols, values, starts


def mel_power(power: np.ndarray, sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
              fmax: float | None = None) -> np.ndarray:
    """Power spectrogram (frames, bins) to mel power (frames, n_mels): ``power @ mel_filterbank(...).T``."""
    sparse = _sparse_filterbank(sr, n_fft, n_mels, fmin, fmax)
    if sparse is None:
        return power @ mel_filterbank(sr, n_fft, n_mels, fmin, fmax).T
    cols, values, starts = sparse
    return np.add.reduceat(power[:, cols] * values, starts, axis=1)


@lru_cache(maxsize=8)
def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II basis, shape (n_mfcc, n_mels), equal to scipy.fft.dct(type=2, norm='ortho')."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=8)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', n, fftbins=True))."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    window.setflags(write=False)
    return window


def power_spectrogram(y: np.ndarray, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """|STFT|^2 with librosa's centring (zero padding of n_fft // 2), shape (frames, 1 + n_fft // 2)."""
    y = np.asarray(y, dtype=np.float64)
    pad = n_fft // 2
    padded = np.pad(y, (pad, pad), mode="constant")
    if padded.size < n_fft:
        padded = np.pad(padded, (0, n_fft - padded.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    # NumPy's pocketfft is about 4x faster in float64 than in float32, and more precise.
    spectrum = np.fft.rfft(frames * hann_window(n_fft), axis=1)
    return spectrum.real**2 + spectrum.imag**2


def mfcc(
    y: np.ndarray,
    sr: int = 16000,
    n_mfcc: int = 13,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """MFCCs of a mono signal, shape (frames, n_mfcc), matching librosa.feature.mfcc(...).T."""
    if np.size(y) == 0:
        raise ValueError("cannot compute MFCCs of an empty signal")
    power = power_spectrogram(y, n_fft=n_fft, hop_length=hop_length)
    mel = mel_power(power, sr, n_fft, n_mels, fmin, fmax)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    if top_db is not None:
        log_mel = np.maximum(log_mel, log_mel.max() - top_db)
    return (log_mel @ dct_matrix(n_mfcc, n_mels).T).astype(np.float32)


def normalize_features(features: np.ndarray, mode: str) -> np.ndarray:
    """Per-window normalisation over time: removes the channel (microphone, codec) colouring."""
    if mode == "none":
        return features
    centred = features - features.mean(axis=0, keepdims=True)
    if mode == "cmn":
        return centred
    return centred / (features.std(axis=0, keepdims=True) + 1e-5)


def window_features(speech: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Model input for one analysis window of cleaned speech, shape (frames, n_mfcc), float32."""
    feats = mfcc(
        speech,
        sr=settings.sample_rate,
        n_mfcc=settings.n_mfcc,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
        top_db=settings.top_db,
    )
    return normalize_features(feats, settings.feature_norm).astype(np.float32)
