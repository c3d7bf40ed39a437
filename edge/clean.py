"""Stationary spectral gating (the original recipe's noise reduction), equal to noisereduce's."""

from __future__ import annotations

import numpy as np

# noisereduce.reduce_noise pads every chunk with this many zeros before its STFT, which fixes the
# phase of its frame grid; using the same grid makes our output equal to its output, not just close.
_NOISEREDUCE_PADDING = 30000
# noisereduce estimates the stationary noise profile from at most this many samples (its chunk_size).
_NOISE_PROFILE_SAMPLES = 600000
_TOP_DB = 80.0


def _periodic_hann(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1]


def _stft(y: np.ndarray, n_fft: int, hop: int, lead: int, trail: int) -> np.ndarray:
    """Frames start ``lead`` samples before y; shape (frames, 1 + n_fft // 2), float64 maths."""
    padded = np.pad(np.asarray(y, dtype=np.float64), (lead, trail))
    n_frames = (padded.size - n_fft) // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    return np.fft.rfft(frames * _periodic_hann(n_fft), axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, lead: int, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft` (like scipy.signal.istft), cropped to y."""
    window = _periodic_hann(n_fft)
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * window
    n_frames, overlap = frames.shape[0], n_fft // hop  # n_fft is a multiple of hop here
    out = np.zeros((n_frames + overlap - 1, hop))
    for j in range(overlap):  # add each hop-sized slice of every frame in one vectorised step
        out[j : j + n_frames] += frames[:, j * hop : (j + 1) * hop].reshape(n_frames, hop)
    square = (window**2).reshape(overlap, hop)
    norm2d = np.zeros((n_frames + overlap - 1, hop))
    for j in range(overlap):
        norm2d[j : j + n_frames] += square[j]
    out = (out / np.where(norm2d > 1e-10, norm2d, 1.0)).reshape(-1)
    return out[lead : lead + length].astype(np.float32)


def _to_db(spec: np.ndarray) -> np.ndarray:
    """Amplitude in dB, floored per frequency at its loudest frame minus 80 dB (noisereduce's _amp_to_db)."""
    db = 20.0 * np.log10(np.abs(spec) + np.finfo(np.float64).eps)
    return np.maximum(db, db.max(axis=0, keepdims=True) - _TOP_DB)


def _smoothing_kernel(sr: int, n_fft: int, hop: int, freq_hz: float, time_ms: float) -> np.ndarray:
    """Triangular (time, frequency) kernel; bin counts computed exactly as noisereduce does."""
    n_freq = max(1, int(freq_hz / (sr / (n_fft / 2))))
    n_time = max(1, int(time_ms / (hop / sr * 1000)))
    freq_ramp = np.linspace(0, 1, n_freq + 1, endpoint=False)[1:]
    time_ramp = np.linspace(0, 1, n_time + 1, endpoint=False)[1:]
    freq_tri = np.concatenate([freq_ramp, [1.0], freq_ramp[::-1]])
    time_tri = np.concatenate([time_ramp, [1.0], time_ramp[::-1]])
    kernel = np.outer(time_tri, freq_tri)
    return kernel / kernel.sum()


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: pocketfft is several times slower on sizes with large prime factors."""
    best, p2 = 2 * n, 1
    while p2 < best:
        p3 = p2
        while p3 < best:
            p5 = p3
            while p5 < best:
                if p5 >= n:
                    best = p5
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


def _convolve2d_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same'-size 2-D convolution through the FFT (kernels here are symmetric)."""
    kt, kf = kernel.shape
    shape = (_fast_length(x.shape[0] + kt - 1), _fast_length(x.shape[1] + kf - 1))
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
    """Stationary spectral gating, equal to ``noisereduce.reduce_noise(y, sr, stationary=True)``.

    The noise profile is estimated from the signal itself: per frequency, bins louder than the mean
    plus ``n_std_thresh`` standard deviations (in dB) pass, the rest are attenuated; the 0/1 mask
    is smoothed over 500 Hz and 50 ms. Agrees with noisereduce 3.x to float rounding for inputs up
    to its chunk size (600000 samples); longer inputs are gated in one piece here.
    """
    y = np.asarray(y, dtype=np.float32)
    hop = n_fft // 4
    pad = n_fft // 2
    if y.size < n_fft:
        return y  # too short to estimate a noise profile
    noise = y[:_NOISE_PROFILE_SAMPLES]
    scale = _periodic_hann(n_fft).sum()  # scipy.signal.stft's 'spectrum' scaling, as noisereduce uses
    noise_db = _to_db(_stft(noise, n_fft, hop, pad, pad) / scale)
    thresh = noise_db.mean(axis=0) + n_std_thresh * noise_db.std(axis=0)
    # First frame on noisereduce's grid that still overlaps the signal.
    lead = (_NOISEREDUCE_PADDING + pad) % hop
    lead += hop * ((n_fft - 1 - lead) // hop)
    spec = _stft(y, n_fft, hop, lead, n_fft)
    kernel = _smoothing_kernel(sr, n_fft, hop, freq_mask_smooth_hz, time_mask_smooth_ms)
    gate = _convolve2d_same((_to_db(spec / scale) > thresh[None, :]).astype(np.float64), kernel)
    # noisereduce smooths p * gate + (1 - p) over its zero-padded chunk, where the gate is closed, so
    # the constant 1 - p extends past the signal in time but not past DC and Nyquist in frequency.
    constant = np.convolve(np.ones(spec.shape[1]), kernel.sum(axis=0), mode="same")
    mask = gate * prop_decrease + (1.0 - prop_decrease) * constant[None, :]
    return _istft(spec * mask, n_fft, hop, lead, y.size)
