"""Frame analysis in pure NumPy: one spectrum per frame gives cepstra, level, pitch and voicing.

Every frame of a clip is analysed once (:func:`analyse_frames`); speech detection, the cepstra and
the pitch track all read that one spectrum, and analysis windows are slices of the frames. The mel
filter bank, DCT and mel-cepstrum helpers match librosa (``mfcc`` equals ``librosa.feature.mfcc``
to float rounding, tested) but are written by hand: librosa pulls in numba, scipy and
scikit-learn (hundreds of MB and seconds of import time) that an edge device should not carry.
Filter banks, windows and DCT matrices are built once per parameter set and cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .settings import N_FORMANTS, FeatureSettings


def _hz_to_mel(freqs: np.ndarray | float) -> np.ndarray:
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
    if mode == "none" or features.shape[0] == 0:
        return features
    centred = features - features.mean(axis=0, keepdims=True)
    if mode == "cmn":
        return centred
    return centred / (features.std(axis=0, keepdims=True) + 1e-5)


# -- one analysis per frame ------------------------------------------------------------------------
# Pitch is searched between these (speaking voices, children included).
MIN_PITCH_HZ = 70.0
MAX_PITCH_HZ = 500.0
# The autocorrelation is taken over this band only: below it hum and rumble correlate over
# pitch-like lags; above it white noise dominates while voices have little energy.
_PITCH_BAND_HZ = (100.0, 1500.0)
# log2(F0 / this) is the pitch column: 0 near the boundary between typical female and male voices.
PITCH_REFERENCE_HZ = 150.0
# Formants: linear prediction of the 0-5 kHz band alone (that band read as a 10 kHz signal), where a
# 12th-order predictor finds F1-F3 of adult voices. Their frequencies are set by the vocal tract and
# move little with the channel (an equaliser changes a peak's height, not where it is).
_FORMANT_BAND_HZ = 5000.0
_LPC_ORDER = 12
_FORMANT_GRID = 512  # points per turn of the predictor's spectrum: its envelope read every ~20 Hz up to 5 kHz
_MIN_FORMANT_HZ = 200.0  # peaks below are the glottal source, not the tract
# log2(F_k / these) are the formant columns: near 0 between typical female and male values.
FORMANT_REFERENCE_HZ = (550.0, 1600.0, 2700.0)


@dataclass(frozen=True)
class FrameStats:
    """Per-frame analysis of consecutive frames (row i = frame ``start + i`` of the signal)."""

    start: int
    cepstra: np.ndarray  # (n, n_mfcc) float32, not normalised
    energy_db: np.ndarray  # (n,) float32: mean square in dB full scale, DC and rumble excluded
    voicing: np.ndarray  # (n,) float32 in [0, 1]: peak normalised autocorrelation at a pitch lag
    f0: np.ndarray  # (n,) float32 Hz at that peak; 0 where not measured (quiet frames)
    # (n, N_FORMANTS) float32 Hz: the first formants; 0 where not measured (quiet frames, or not asked for)
    formants: np.ndarray

    def __len__(self) -> int:
        return int(self.energy_db.shape[0])

    def rows(self, lo: int, hi: int) -> FrameStats:
        """Frames ``lo`` to ``hi`` (absolute indices) as views, no copy."""
        a, b = lo - self.start, hi - self.start
        return FrameStats(lo, self.cepstra[a:b], self.energy_db[a:b], self.voicing[a:b], self.f0[a:b],
                          self.formants[a:b])

    def copy(self) -> FrameStats:
        return FrameStats(self.start, self.cepstra.copy(), self.energy_db.copy(), self.voicing.copy(), self.f0.copy(),
                          self.formants.copy())

    @staticmethod
    def join(parts: list[FrameStats]) -> FrameStats:
        parts = [p for p in parts if len(p)] or parts[-1:]
        if len(parts) == 1:
            return parts[0]
        return FrameStats(parts[0].start, np.concatenate([p.cepstra for p in parts]),
                          np.concatenate([p.energy_db for p in parts]), np.concatenate([p.voicing for p in parts]),
                          np.concatenate([p.f0 for p in parts]), np.concatenate([p.formants for p in parts]))

    @staticmethod
    def empty(start: int, n_mfcc: int) -> FrameStats:
        zeros = np.zeros(0, dtype=np.float32)
        return FrameStats(start, np.zeros((0, n_mfcc), dtype=np.float32), zeros, zeros, zeros,
                          np.zeros((0, N_FORMANTS), dtype=np.float32))


# Mel filters per dense block of the filter bank (see _MelBank).
_MELS_PER_BLOCK = 8


@dataclass(frozen=True)
class _MelBlock:
    bins: slice  # the FFT bins its filters cover
    mels: slice  # its filters
    weights: np.ndarray  # (bins, mels)
    rows: int  # frames per product: under OpenBLAS's one-thread limit (see BLAS_ONE_THREAD_LIMIT)


@dataclass(frozen=True)
class _MelBank:
    """The tilted mel filter bank as dense blocks of consecutive filters, each over only its bins.

    A triangle spans a few bins, so the whole bank as one matrix is mostly zeros; blocks of eight
    filters keep the matrix products small and BLAS-efficient. Measured per 64 frames at the
    defaults: 25 us, against 88 us for the whole bank as one product and 122 us for summing each
    filter's run of bins (``np.add.reduceat``); 86 us against 2.5 ms for one product with the
    original recipe's 128 mels over 2,049 bins.
    """

    blocks: tuple[_MelBlock, ...]

    @staticmethod
    def build(weights: np.ndarray) -> _MelBank:
        if not weights.any(axis=1).all():  # (not np.unique: it imports numpy.ma, 14 ms at start-up)
            raise ValueError("the mel filter bank has empty filters: use fewer mels or a larger frame")
        blocks = []
        for first in range(0, weights.shape[0], _MELS_PER_BLOCK):
            mels = slice(first, min(first + _MELS_PER_BLOCK, weights.shape[0]))
            covered = np.flatnonzero(weights[mels].any(axis=0))
            bins = slice(int(covered[0]), int(covered[-1]) + 1)
            dense = np.ascontiguousarray(weights[mels, bins].T)
            dense.setflags(write=False)
            blocks.append(_MelBlock(bins, mels, dense, max(1, BLAS_ONE_THREAD_LIMIT // dense.size)))
        return _MelBank(tuple(blocks))

    @property
    def top_bin(self) -> int:
        return max(block.bins.stop for block in self.blocks)

    def project(self, power: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Mel power of each row of ``power`` into ``out`` (rows, n_mels)."""
        for block in self.blocks:
            for first in range(0, power.shape[0], block.rows):
                rows = slice(first, first + block.rows)
                np.matmul(power[rows, block.bins], block.weights, out=out[rows, block.mels])
        return out


@dataclass(frozen=True)
class _Analysis:
    """Everything fixed by the settings, built once: window, FFT size, filter bank with the tilt in it."""

    window: np.ndarray
    n_fft: int
    mel: _MelBank  # the tilted mel filter bank
    dct: np.ndarray
    band: slice  # FFT bins of fmin..fmax (level)
    acf_bins: slice  # FFT bins of the pitch band
    # Power in the pitch band -> autocorrelation at lag 0 (column 0) and at each candidate pitch lag
    # (columns 1..), the latter already divided by the window's own autocorrelation.
    acf_basis: np.ndarray
    first_lag: int  # lag of column 1, on the half-rate autocorrelation grid (the lags are consecutive)
    acf_rows: int  # frames per autocorrelation product (see BLAS_ONE_THREAD_LIMIT)
    power_scale: float  # power sum -> mean square of the frame
    top_bin: int  # bins above this are never read
    formants: _Formants | None  # None when formants are not asked for

    @property
    def lag_samples(self) -> float:
        """Samples per lag on the autocorrelation grid."""
        return self.n_fft / (self.n_fft // 2)


def _fft_size(frame_length: int) -> int:
    # Twice the frame, so that the autocorrelation taken from the spectrum does not wrap around.
    return 2 << int(np.ceil(np.log2(frame_length)))


@lru_cache(maxsize=8)
def _analysis(settings: FeatureSettings) -> _Analysis:
    rate, length = settings.sample_rate, settings.frame_length
    n_fft = _fft_size(length)
    window = hann_window(length)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    tilt = 1.0 + settings.pre_emphasis**2 - 2.0 * settings.pre_emphasis * np.cos(2 * np.pi * freqs / rate)
    mel = _MelBank.build(mel_filterbank(rate, n_fft, settings.n_mels, settings.fmin, settings.fmax) * tilt[None, :])
    band = slice(max(int(np.searchsorted(freqs, settings.fmin)), 3),
                 int(np.searchsorted(freqs, settings.fmax, "right")))
    lo, hi = _PITCH_BAND_HZ
    pitch_bins = int(np.searchsorted(freqs, hi, "right"))
    # The band, tilted up by 3 dB per octave (half a first difference): rumble and brown noise are
    # partly whitened, so their narrow low-frequency band no longer looks periodic; voices keep
    # their harmonics (measured on noise and the bundled voices: 100-1500 Hz with this tilt gave
    # the lowest noise voicing and the fewest octave errors of the bands and tilts tried).
    band_bins = (freqs[:pitch_bins] >= lo) & (freqs[:pitch_bins] <= hi)
    pitch_mask = band_bins * np.sqrt(2.0 - 2.0 * np.cos(2 * np.pi * freqs[:pitch_bins] / rate))
    in_band = np.flatnonzero(band_bins)
    acf_bins = slice(int(in_band[0]), int(in_band[-1]) + 1)
    # The autocorrelation of a band below rate/4 needs only half the lags: the grid of an inverse
    # FFT of n_fft // 2 points, whose value at lag L is (2 / half) * sum_k power_k cos(2 pi k L / half)
    # (no DC or Nyquist bin in the band). Only ~100 lags are read, so that sum as one matrix product
    # costs a seventh of the inverse FFT of every lag (measured: 17 against 119 us per 64 frames).
    half = n_fft // 2
    step = n_fft / half  # samples per lag on that grid
    lags = np.arange(int(np.floor(rate / MAX_PITCH_HZ / step)), int(np.ceil(rate / MIN_PITCH_HZ / step)) + 1)
    # The window's own autocorrelation (full band: it is the envelope every lag is seen through).
    w_acf = np.correlate(window, window, mode="full")[length - 1 :]
    window_acf = w_acf[np.round(lags * step).astype(int)] / w_acf[0]
    bins = np.arange(acf_bins.start, acf_bins.stop)
    basis = (2.0 / half) * np.cos(2 * np.pi * np.outer(bins, np.concatenate([[0], lags])) / half)
    basis *= pitch_mask[acf_bins, None]
    basis[:, 1:] /= window_acf
    basis.setflags(write=False)
    power_scale = 2.0 / (n_fft * float(np.sum(window**2)))  # Parseval, one-sided spectrum
    formants = _Formants.build(freqs, tilt) if settings.formants else None
    top_bin = max(mel.top_bin, band.stop, acf_bins.stop, formants.bins if formants else 0)
    return _Analysis(window, n_fft, mel, dct_matrix(settings.n_mfcc, settings.n_mels), band,
                     acf_bins, basis, int(lags[0]), max(1, BLAS_ONE_THREAD_LIMIT // basis.size), power_scale,
                     top_bin, formants)


@dataclass(frozen=True)
class _Formants:
    """Linear prediction of the 0-5 kHz band from the frame's power spectrum, as matrix products.

    Bins 0..m of the band are the whole spectrum of a signal sampled at 2 * freqs[m], so the band's
    autocorrelation at lag L is sum_k w_k P_k cos(pi k L / m) (w = 1 at both ends, else 2). The
    predictor's spectrum |A(f)|^2 is then read every ~20 Hz from 200 Hz up (an FFT of the whole grid
    cost four times as much for 13 coefficients, measured).
    """

    basis: np.ndarray  # (bins, order + 1): power -> autocorrelation, tilted and lag-windowed
    bins: int
    first: int  # grid index of the columns of cos and sin
    step_hz: float
    cos: np.ndarray  # (order + 1, points): Re A = a @ cos
    sin: np.ndarray  # Im A = a @ sin
    rows: int  # frames per product (see BLAS_ONE_THREAD_LIMIT)

    @staticmethod
    def build(freqs: np.ndarray, tilt: np.ndarray) -> _Formants:
        m = int(np.searchsorted(freqs, _FORMANT_BAND_HZ, "right")) - 1
        band_rate = 2.0 * float(freqs[m])
        lags = np.arange(_LPC_ORDER + 1)
        weights = np.full(m + 1, 2.0)
        weights[[0, m]] = 1.0
        basis = np.cos(np.pi * np.outer(np.arange(m + 1), lags) / m) * (weights * tilt[: m + 1])[:, None]
        # A 60 Hz Gaussian lag window widens sharp harmonic peaks, so the predictor follows the formants.
        basis *= np.exp(-0.5 * (2 * np.pi * 60.0 * lags / band_rate) ** 2)
        step_hz = band_rate / _FORMANT_GRID
        first = max(0, int(_MIN_FORMANT_HZ / step_hz) - 1)
        angle = 2 * np.pi * np.outer(lags, np.arange(first, _FORMANT_GRID // 2 + 1)) / _FORMANT_GRID
        cos, sin = np.cos(angle), -np.sin(angle)
        for matrix in (basis, cos, sin):
            matrix.setflags(write=False)
        rows = max(1, BLAS_ONE_THREAD_LIMIT // max(basis.size, cos.size))
        return _Formants(basis, m + 1, first, step_hz, cos, sin, rows)

    def measure(self, band_power: np.ndarray) -> np.ndarray:
        """The first N_FORMANTS peaks of the predictor's envelope above 200 Hz, in Hz (0 where fewer),
        from the power of bins 0..``bins`` of each frame."""
        coefficients = _levinson(band_power @ self.basis)
        real, imag = coefficients @ self.cos, coefficients @ self.sin
        gain = np.multiply(real, real, out=real)
        gain += np.multiply(imag, imag, out=imag)
        gain += 1e-12  # 1 / envelope: the envelope's peaks are its minima
        mid = gain[:, 1:-1]
        peak = mid < gain[:, :-2]
        peak &= mid <= gain[:, 2:]
        rows, cols = np.nonzero(peak)  # row by row, each row's peaks from low to high
        first_of_row = np.searchsorted(rows, np.arange(band_power.shape[0]))
        count = np.bincount(rows, minlength=band_power.shape[0])
        out = np.zeros((band_power.shape[0], N_FORMANTS), np.float32)
        for k in range(N_FORMANTS):
            row = np.flatnonzero(count > k)
            col = cols[first_of_row[row] + k] + 1  # a column of gain
            lg, cg, hg = (np.log(gain[row, col + d]) for d in (-1, 0, 1))
            curve = lg - 2.0 * cg + hg
            offset = np.where(curve > 0, 0.5 * (lg - hg) / np.where(curve > 0, curve, 1.0), 0.0)  # parabola's vertex
            out[row, k] = (self.first + col + offset) * self.step_hz
        return out


def _levinson(r: np.ndarray) -> np.ndarray:
    """Predictor coefficients (rows, order + 1), a_0 = 1, from autocorrelations (rows, order + 1)."""
    order = r.shape[1] - 1
    a = np.zeros_like(r)
    a[:, 0] = 1.0
    err = r[:, 0] * (1.0 + 1e-4) + 1e-20  # a little white noise keeps the predictor stable
    for i in range(1, order + 1):
        k = -(r[:, i] + np.einsum("ij,ij->i", a[:, 1:i], r[:, i - 1 : 0 : -1])) / err
        a[:, 1:i] += k[:, None] * a[:, i - 1 : 0 : -1].copy()
        a[:, i] = k
        err *= 1.0 - k * k
        np.maximum(err, 1e-20, out=err)
    return a


def frame_count(n_samples: int, settings: FeatureSettings) -> int:
    """Frames that fit in ``n_samples`` (frame i covers samples i*hop .. i*hop + frame_length)."""
    if n_samples < settings.frame_length:
        return 0
    return 1 + (n_samples - settings.frame_length) // settings.hop_length


# Frames analysed in one pass: bounds the work buffers whatever the size of the block (1.6 MB at the
# default settings). 128 frames were 8 % faster on a 2 MB L2 cache and cost 1.6 MB more of peak memory
# in a one-file 'gvd predict' (measured); memory was the scarcer.
_CHUNK_FRAMES = 64
# Multiply-adds per matrix product at most: OpenBLAS's single-thread limit in its default build. A
# process that imported NumPy before edge has a multi-threaded BLAS, and threaded products made the
# whole frame analysis 10-30x slower on a busy 2-core machine (measured).
BLAS_ONE_THREAD_LIMIT = 2 * 65536 * 4


class _Workspace:
    """Work buffers for up to ``rows`` frames, reused from call to call.

    Fresh multi-megabyte temporaries on every call were served by fresh memory maps: 1,500 page
    faults per 4 s clip, a third of the analysis time (measured). Each thread has its own (see
    :func:`_workspace`), so a detector shared by the server's threads needs no lock.
    """

    def __init__(self, a: _Analysis, settings: FeatureSettings, rows: int):
        self.rows = rows
        hop, length = settings.hop_length, settings.frame_length
        self.samples = np.empty((rows - 1) * hop + length)
        # Row i is frame i of the samples (a view, built once: sliding_window_view costs 20 us a call).
        self.framed = np.lib.stride_tricks.as_strided(self.samples, (rows, length), (hop * 8, 8), writeable=False)
        self.mean = np.empty((rows, 1))
        # The FFT's input: columns from frame_length on are its zero padding, never written.
        self.frames = np.zeros((rows, a.n_fft))
        self.spectrum = np.empty((rows, a.n_fft // 2 + 1), np.complex128)
        self.power = np.empty((rows, a.top_bin))
        self.scratch = np.empty((rows, a.top_bin))
        self.mel = np.empty((rows, a.dct.shape[1]))
        self.acf = np.empty((rows, a.acf_basis.shape[1]))


_LOCAL = threading.local()


def _workspace(settings: FeatureSettings, a: _Analysis, frames: int) -> _Workspace:
    """This thread's workspace for ``settings``, with room for ``frames`` frames (at most one chunk)."""
    spaces = getattr(_LOCAL, "spaces", None)
    if spaces is None or len(spaces) > 4:  # a handful of settings per process; forget the rest
        spaces = _LOCAL.spaces = {}
    rows = min(frames, _CHUNK_FRAMES)
    space = spaces.get(settings)
    if space is None or space.rows < rows:
        space = spaces[settings] = _Workspace(a, settings, rows)
    return space


def analyse_frames(y: np.ndarray, settings: FeatureSettings, start: int = 0) -> FrameStats:
    """Analyse every whole frame of ``y`` (which begins at frame ``start`` of the signal).

    One FFT per frame (float64: NumPy's pocketfft is as fast as in float32 here, and more precise)
    gives the level, the mel cepstra and, for frames loud enough to be speech, the autocorrelation
    that measures voicing and pitch and, when the settings ask for them, the formants.
    """
    y = np.asarray(y)
    n = frame_count(len(y), settings)
    if n == 0:
        return FrameStats.empty(start, settings.n_mfcc)
    a = _analysis(settings)
    space = _workspace(settings, a, n)
    out = FrameStats(start, np.empty((n, settings.n_mfcc), np.float32), np.empty(n, np.float32),
                     np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros((n, N_FORMANTS), np.float32))
    for lo in range(0, n, space.rows):
        hi = min(lo + space.rows, n)
        _analyse_chunk(y, lo, hi, settings, a, space, out)
    return out


def _analyse_chunk(y: np.ndarray, lo: int, hi: int, settings: FeatureSettings, a: _Analysis, space: _Workspace,
                   out: FrameStats) -> None:
    """Frames ``lo`` to ``hi`` of ``y`` into rows ``lo`` to ``hi`` of ``out``, in ``space``'s buffers."""
    m, hop, length = hi - lo, settings.hop_length, settings.frame_length
    space.samples[: (m - 1) * hop + length] = y[lo * hop : (hi - 1) * hop + length]  # float32 -> float64
    frames = space.framed[:m]
    # Removing each frame's mean makes a DC offset (cheap microphones) invisible: without it the
    # window's side lobes carry a large offset into the lowest mel bands (measured, and tested).
    # np.mean's own two steps, without its Python wrapper.
    mean = np.divide(np.add.reduce(frames, axis=1, keepdims=True, out=space.mean[:m]), length, out=space.mean[:m])
    windowed = space.frames[:m, :length]
    np.subtract(frames, mean, out=windowed)
    np.multiply(windowed, a.window, out=windowed)
    spectrum = np.fft.rfft(space.frames[:m], axis=1, out=space.spectrum[:m])[:, : a.top_bin]
    power, scratch = space.power[:m], space.scratch[:m]
    np.square(spectrum.real, out=power)
    np.add(power, np.square(spectrum.imag, out=scratch), out=power)
    energy_db = 10.0 * np.log10(power[:, a.band].sum(axis=1) * a.power_scale + 1e-12)
    out.energy_db[lo:hi] = energy_db
    mel = a.mel.project(power, space.mel[:m])
    out.cepstra[lo:hi] = (10.0 * np.log10(np.maximum(mel, 1e-10, out=mel), out=mel)) @ a.dct.T
    # Autocorrelation only where speech is possible at all: quiet frames are never speech.
    loud = np.flatnonzero(energy_db > settings.vad_energy_dbfs)
    if loud.size:
        acf = space.acf[: loud.size]
        for first in range(0, loud.size, a.acf_rows):
            rows = loud[first : first + a.acf_rows]
            np.matmul(power[rows, a.acf_bins], a.acf_basis, out=acf[first : first + rows.size])
        out.voicing[lo + loud], out.f0[lo + loud] = _pitch(acf, a, settings.sample_rate)
        if a.formants is not None:
            for first in range(0, loud.size, a.formants.rows):
                rows = loud[first : first + a.formants.rows]
                out.formants[lo + rows] = a.formants.measure(power[rows, : a.formants.bins])


def _pitch(acf: np.ndarray, a: _Analysis, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Voicing strength and F0 per frame from the pitch band's autocorrelation (lag 0, then the lags).

    The autocorrelation is divided by the window's own (Boersma's correction, so a perfectly periodic
    signal scores 1 at its period; done in the basis). The period is the shortest lag whose local peak
    comes within 0.05 of the best one: a multiple of the period scores as high, and must not win.
    """
    nacf = np.divide(acf[:, 1:], acf[:, :1] + 1e-20)
    np.minimum(nacf, 1.0, out=nacf)
    inner = nacf[:, 1:-1]
    peaks = np.where((inner >= nacf[:, :-2]) & (inner >= nacf[:, 2:]), inner, -1.0)  # local maxima
    top = peaks.max(axis=1, keepdims=True)
    best = np.argmax(peaks >= top - 0.05, axis=1) + 1
    # The end lags count as -1 (never a peak): the first of them wins when no inner peak is above -0.95.
    best[top[:, 0] <= -0.95] = 0
    voicing = np.maximum(nacf[np.arange(best.size), best], 0.0)
    return voicing, rate / ((a.first_lag + best) * a.lag_samples)


def formant_columns(stats: FrameStats, voicing_threshold: float) -> np.ndarray:
    """(n, N_FORMANTS) float32: log2(F_k / FORMANT_REFERENCE_HZ[k]) where the frame is voiced and F_k
    was found, else 0."""
    voiced = (stats.voicing > voicing_threshold)[:, None] & (stats.formants > 0)
    ratio = np.maximum(stats.formants, 1.0) / np.asarray(FORMANT_REFERENCE_HZ, dtype=np.float32)
    return np.where(voiced, np.log2(ratio), 0.0).astype(np.float32)


def pitch_columns(stats: FrameStats, voicing_threshold: float) -> np.ndarray:
    """(n, 2) float32: log2(F0 / 150 Hz) where the frame is voiced (else 0), and the voicing strength."""
    voiced = stats.voicing > voicing_threshold
    log_f0 = np.where(voiced, np.log2(np.maximum(stats.f0, 1.0) / PITCH_REFERENCE_HZ), 0.0)
    return np.stack([log_f0, stats.voicing], axis=1).astype(np.float32)
