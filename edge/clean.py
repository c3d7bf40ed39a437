"""Cleaning steps applied to each analysis window before features: noise gate, loudness, pre-emphasis."""

from __future__ import annotations

import numpy as np

from .settings import FeatureSettings

_EPS = 1e-10


def rms_normalize(y: np.ndarray, target_dbfs: float = -20.0, peak_limit: float = 0.99) -> np.ndarray:
    """Scale to target RMS level; the gain is capped so that no sample clips."""
    y = np.asarray(y, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms < _EPS:
        return y
    gain = 10.0 ** (target_dbfs / 20.0) / rms
    peak = float(np.max(np.abs(y)))
    if peak * gain > peak_limit:
        gain = peak_limit / peak
    return (y * gain).astype(np.float32)


def pre_emphasis(y: np.ndarray, coefficient: float = 0.97) -> np.ndarray:
    """y[n] - a * y[n-1], first sample kept (librosa.effects.preemphasis with zi=0 semantics)."""
    y = np.asarray(y, dtype=np.float32)
    if coefficient == 0.0 or y.size == 0:
        return y
    out = np.empty_like(y)
    out[0] = y[0]
    out[1:] = y[1:] - coefficient * y[:-1]
    return out


def _stft(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    pad = n_fft // 2
    padded = np.pad(y, (pad, pad), mode="reflect" if y.size > pad else "constant")
    if padded.size < n_fft:
        padded = np.pad(padded, (0, n_fft - padded.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * window
    total = n_fft + hop * (frames.shape[0] - 1)
    out = np.zeros(total, dtype=np.float64)
    norm = np.zeros(total, dtype=np.float64)
    for i, frame in enumerate(frames):
        out[i * hop : i * hop + n_fft] += frame
        norm[i * hop : i * hop + n_fft] += window**2
    out /= np.where(norm > 1e-8, norm, 1.0)
    pad = n_fft // 2
    return out[pad : pad + length].astype(np.float32)


def _smoothing_kernel(sr: int, n_fft: int, hop: int, freq_hz: float, time_ms: float) -> np.ndarray:
    n_freq = max(1, int(freq_hz / (sr / n_fft)))
    n_time = max(1, int(time_ms / (hop / sr * 1000)))
    freq_ramp = np.linspace(0, 1, n_freq + 1, endpoint=False)[1:]
    time_ramp = np.linspace(0, 1, n_time + 1, endpoint=False)[1:]
    freq_tri = np.concatenate([freq_ramp, [1.0], freq_ramp[::-1]])
    time_tri = np.concatenate([time_ramp, [1.0], time_ramp[::-1]])
    kernel = np.outer(time_tri, freq_tri)
    return kernel / kernel.sum()


def _convolve2d_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same'-size 2-D convolution through the FFT (kernels here are symmetric)."""
    kt, kf = kernel.shape
    shape = (x.shape[0] + kt - 1, x.shape[1] + kf - 1)
    out = np.fft.irfft2(np.fft.rfft2(x, shape) * np.fft.rfft2(kernel, shape), shape)
    t0, f0 = (kt - 1) // 2, (kf - 1) // 2
    return out[t0 : t0 + x.shape[0], f0 : f0 + x.shape[1]]


def spectral_gate(
    y: np.ndarray,
    sr: int,
    n_fft: int = 1024,
    n_std_thresh: float = 1.5,
    prop_decrease: float = 1.0,
    freq_mask_smooth_hz: float = 500.0,
    time_mask_smooth_ms: float = 50.0,
) -> np.ndarray:
    """Stationary spectral gating, the algorithm of ``noisereduce.reduce_noise(stationary=True)``.

    The noise profile is estimated from the signal itself: per frequency, bins louder than the mean
    plus ``n_std_thresh`` standard deviations (in dB) pass, the rest are attenuated.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.size < n_fft // 4:
        return y
    hop = n_fft // 4
    spec = _stft(y, n_fft, hop)
    spec_db = 20.0 * np.log10(np.maximum(np.abs(spec), _EPS))
    thresh = spec_db.mean(axis=0) + n_std_thresh * spec_db.std(axis=0)
    mask = (spec_db > thresh[None, :]).astype(np.float64)
    mask = _convolve2d_same(mask, _smoothing_kernel(sr, n_fft, hop, freq_mask_smooth_hz, time_mask_smooth_ms))
    mask = mask * prop_decrease + (1.0 - prop_decrease)
    return _istft(spec * mask, n_fft, hop, y.size)


def denoise(y: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Noise reduction, when the settings switch it on; runs on the whole window, before speech detection."""
    if settings.noise_reduction:
        return spectral_gate(y, settings.sample_rate)
    return np.asarray(y, dtype=np.float32)


def level_and_emphasise(y: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Loudness normalisation then pre-emphasis, on the speech that reaches the features."""
    if settings.rms_normalize:
        y = rms_normalize(y, settings.target_dbfs)
    if settings.pre_emphasis:
        y = pre_emphasis(y, settings.pre_emphasis)
    return np.asarray(y, dtype=np.float32)
