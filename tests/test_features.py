"""Frame analysis: the librosa-equal helpers, and one analysis per frame (cepstra, level, pitch, voicing).

``mfcc`` must equal librosa.feature.mfcc (what the original project trained on). ``analyse_frames``
must treat every frame on its own (so blocks, streams and windows can share frames), ignore a DC
offset, and measure the pitch of voices to a few percent.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np
import pytest

from edge import features
from edge.features import (
    FORMANT_REFERENCE_HZ,
    N_FORMANTS,
    PITCH_REFERENCE_HZ,
    FrameStats,
    analyse_frames,
    dct_matrix,
    formant_columns,
    frame_count,
    hann_window,
    mel_filterbank,
    mel_power,
    mfcc,
    normalize_features,
    pitch_columns,
)
from edge.settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS, FeatureSettings

from signals import coloured_noise, voice

SR = 16000
S = DEFAULT_SETTINGS

TOLERANCE = 1e-3  # absolute, on MFCC values of order 1-500


def librosa_mfcc(y: np.ndarray, sr: int = 16000, **kwargs) -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft too large for input" on the short cases
        return librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13, n_fft=2048, hop_length=512, **kwargs).T


@pytest.mark.parametrize("length", [1, 2, 511, 512, 513, 2047, 2048, 2049, 8000, 48000, 48001])
def test_matches_librosa_on_any_length(rng, length):
    y = (0.1 * rng.standard_normal(length)).astype(np.float32)
    ours = mfcc(y)
    ref = librosa_mfcc(y)
    assert ours.shape == ref.shape == (1 + length // 512, 13)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=TOLERANCE, rtol=0)


def test_matches_librosa_on_tones_and_silence():
    t = np.arange(48000) / 16000
    chirp = (0.5 * np.sin(2 * np.pi * (100 + 1000 * t) * t)).astype(np.float32)
    for y in (chirp, np.zeros(48000, np.float32), np.full(3000, 0.25, np.float32)):
        np.testing.assert_allclose(mfcc(y), librosa_mfcc(y), atol=TOLERANCE, rtol=0)


def test_other_rates_and_fmax(rng):
    y = (0.1 * rng.standard_normal(22050)).astype(np.float32)
    ours = mfcc(y, sr=22050, fmax=8000.0)
    np.testing.assert_allclose(ours, librosa_mfcc(y, sr=22050, fmax=8000.0), atol=TOLERANCE, rtol=0)


def test_empty_signal_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        mfcc(np.zeros(0, np.float32))


def test_sparse_mel_projection_equals_dense(rng):
    power = rng.random((7, 1025))
    dense = power @ mel_filterbank(16000, 2048, 128).T
    np.testing.assert_allclose(mel_power(power, 16000, 2048, 128), dense, rtol=1e-12)
    # A filter bank with empty filters (too many mels for the FFT size) falls back to the matmul.
    power = rng.random((3, 129))
    np.testing.assert_allclose(mel_power(power, 16000, 256, 128), power @ mel_filterbank(16000, 256, 128).T,
                               rtol=1e-12)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    np.testing.assert_allclose(mel_filterbank(16000, 2048, 128), librosa.filters.mel(sr=16000, n_fft=2048),
                               atol=1e-7)


def test_normalisation_modes(rng):
    feats = rng.standard_normal((94, 13)).astype(np.float32) * 5 + 3
    assert normalize_features(feats, "none") is feats
    cmn = normalize_features(feats, "cmn")
    np.testing.assert_allclose(cmn.mean(axis=0), 0, atol=1e-5)
    cmvn = normalize_features(feats, "cmvn")
    np.testing.assert_allclose(cmvn.std(axis=0), 1, atol=1e-3)


def frames_of(n: int, settings: FeatureSettings = S) -> int:
    """Samples that hold exactly ``n`` frames."""
    return settings.frame_length + (n - 1) * settings.hop_length


def harmonic_tone(f0: float, seconds: float = 1.5, level: float = 0.1) -> np.ndarray:
    """Equal-phase-offset harmonics up to 7.6 kHz with a 1/k roll-off: a steady sung vowel."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, int(7600 // f0) + 1))
    return (level * y / np.abs(y).max()).astype(np.float32)


def glottal_pulses(f0: float, seconds: float = 1.5, level: float = 0.1) -> np.ndarray:
    """A pulse train through one decaying formant (700 Hz): the shape of a voice, not a sum of sines."""
    n = int(seconds * SR)
    train = np.zeros(n)
    train[np.round(np.arange(0, n, SR / f0)).astype(int).clip(max=n - 1)] = 1.0
    k = np.arange(240)
    y = np.convolve(train, np.exp(-k / 30) * np.sin(2 * np.pi * 700 * k / SR))[:n]
    return (level * y / np.abs(y).max()).astype(np.float32)


def assert_stats_close(a: FrameStats, b: FrameStats, cepstra_atol: float = 1e-3) -> None:
    assert a.start == b.start and len(a) == len(b)
    np.testing.assert_allclose(a.cepstra, b.cepstra, atol=cepstra_atol, rtol=0)
    np.testing.assert_allclose(a.energy_db, b.energy_db, atol=1e-3, rtol=0)
    np.testing.assert_allclose(a.voicing, b.voicing, atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.f0, b.f0, rtol=1e-5)


# -- analyse_frames: shape and independence of frames ---------------------------------------------

@pytest.mark.parametrize("n_samples,frames", [(0, 0), (511, 0), (512, 1), (831, 1), (832, 2), (48000, 149)])
def test_frame_count_and_shapes(n_samples, frames):
    assert frame_count(n_samples, S) == frames
    stats = analyse_frames(np.zeros(n_samples, np.float32), S, start=7)
    assert stats.start == 7 and len(stats) == frames
    assert stats.cepstra.shape == (frames, S.n_mfcc) and stats.cepstra.dtype == np.float32
    for column in (stats.energy_db, stats.voicing, stats.f0):
        assert column.shape == (frames,) and column.dtype == np.float32


def test_frames_are_independent_of_the_pieces_they_are_analysed_in(rng):
    y = voice(170, 3.0, noise=0.003) + 0.02
    whole = analyse_frames(y, S)
    hop = S.hop_length
    cuts = [0, 1, 2, 37, 38, 100, len(whole)]  # frame boundaries, including one-frame pieces
    pieces = [analyse_frames(y[a * hop : (b - 1) * hop + S.frame_length], S, start=a) for a, b in pairwise(cuts)]
    assert [p.start for p in pieces] == cuts[:-1]
    joined = FrameStats.join(pieces)
    # Each frame sees exactly the same samples: equal to FFT rounding, whatever the batch.
    assert_stats_close(joined, whole, cepstra_atol=1e-4)
    window = whole.rows(40, 90)
    assert (window.start, len(window)) == (40, 50)
    assert_stats_close(window, analyse_frames(y[40 * hop : 89 * hop + S.frame_length], S, start=40), 1e-4)


def test_blocks_longer_than_a_chunk_give_the_frames_of_the_pieces():
    """Frames are analysed in chunks of reused buffers: a chunk boundary changes nothing, to the bit."""
    y = voice(170, 9.0, noise=0.003)
    n = frame_count(y.size, S)
    assert n > 2 * features._CHUNK_FRAMES
    whole = analyse_frames(y, S)
    cut = features._CHUNK_FRAMES + 17
    pieces = FrameStats.join([analyse_frames(y[: (cut - 1) * S.hop_length + S.frame_length], S),
                              analyse_frames(y[cut * S.hop_length :], S, start=cut)])
    for column in ("cepstra", "energy_db", "voicing", "f0"):
        np.testing.assert_array_equal(getattr(pieces, column), getattr(whole, column))


def test_results_do_not_share_the_work_buffers():
    first = analyse_frames(voice(150, 6.0, noise=0.003), S)
    kept = [column.copy() for column in (first.cepstra, first.energy_db, first.voicing, first.f0)]
    analyse_frames(voice(230, 1.0, seed=3), S)
    analyse_frames(voice(120, 8.0, seed=4, noise=0.01), S)
    for column, copy in zip((first.cepstra, first.energy_db, first.voicing, first.f0), kept, strict=True):
        np.testing.assert_array_equal(column, copy)


def test_threads_analysing_at_once_get_what_one_thread_gets():
    """Each thread has its own work buffers (a detector is shared by the server's threads)."""
    signals = [voice(f0, 4.0, seed=i, noise=0.003) for i, f0 in enumerate((110, 150, 210, 260))] * 4
    expected = [analyse_frames(y, S) for y in signals]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda y: analyse_frames(y, S), signals))
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got.cepstra, want.cepstra)
        np.testing.assert_array_equal(got.voicing, want.voicing)
        np.testing.assert_array_equal(got.f0, want.f0)


@pytest.mark.parametrize("settings", [S, ORIGINAL_SETTINGS, S.with_changes(n_mels=40, fmin=0.0, fmax=8000.0),
                                      S.with_changes(n_mels=2, n_mfcc=2), S.with_changes(n_mels=1, n_mfcc=1)])
def test_mel_blocks_equal_the_whole_filter_bank(rng, settings):
    """The blocked mel projection gives the full product with the filter bank, to float rounding."""
    a = features._analysis(settings)
    freqs = np.fft.rfftfreq(a.n_fft, 1.0 / settings.sample_rate)
    tilt = 1 + settings.pre_emphasis**2 - 2 * settings.pre_emphasis * np.cos(2 * np.pi * freqs / settings.sample_rate)
    weights = mel_filterbank(settings.sample_rate, a.n_fft, settings.n_mels, settings.fmin, settings.fmax) * tilt
    power = rng.random((70, a.top_bin)) * 10.0 ** rng.uniform(-12, 2, (70, 1))
    expected = power @ weights[:, : a.top_bin].T
    got = a.mel.project(power, np.full((70, settings.n_mels), np.nan))
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert not weights[:, a.top_bin :].any()  # no filter reaches past the bins the analysis keeps


def test_autocorrelation_basis_equals_the_inverse_fft(rng):
    """The pitch band's autocorrelation from the basis equals the inverse FFT of the weighted power at
    lag 0 and at every candidate lag (divided there by the window's own autocorrelation)."""
    a = features._analysis(S)
    half = a.n_fft // 2
    freqs = np.fft.rfftfreq(a.n_fft, 1.0 / S.sample_rate)
    lo, hi = features._PITCH_BAND_HZ
    mask = ((freqs >= lo) & (freqs <= hi)) * np.sqrt(2.0 - 2.0 * np.cos(2 * np.pi * freqs / S.sample_rate))
    power = rng.random((7, a.top_bin))
    acf = np.fft.irfft(power * mask[: a.top_bin], half, axis=1)
    lags = np.arange(a.first_lag, a.first_lag + a.acf_basis.shape[1] - 1)
    window_acf = np.correlate(a.window, a.window, "full")[S.frame_length - 1 :]
    window_acf = window_acf[np.round(lags * a.lag_samples).astype(int)] / window_acf[0]
    got = power[:, a.acf_bins] @ a.acf_basis
    np.testing.assert_allclose(got[:, 0], acf[:, 0], rtol=1e-12)
    np.testing.assert_allclose(got[:, 1:] / acf[:, :1], acf[:, lags] / window_acf / acf[:, :1], atol=1e-12)


@pytest.mark.parametrize("settings", [S, ORIGINAL_SETTINGS])
def test_matrix_products_stay_under_openblas_threading_limit(settings):
    """Where NumPy was imported before edge, OpenBLAS threads products above 2 x 65536 x 4
    multiply-adds (its default build), which stalled the analysis on a busy machine: ours stay below."""
    a = features._analysis(settings)
    assert features.BLAS_ONE_THREAD_LIMIT == 2 * 65536 * 4
    assert a.acf_rows >= 1 and a.acf_rows * a.acf_basis.size <= features.BLAS_ONE_THREAD_LIMIT
    assert all(1 <= b.rows and b.rows * b.weights.size <= features.BLAS_ONE_THREAD_LIMIT for b in a.mel.blocks)
    assert features._CHUNK_FRAMES * a.dct.size <= features.BLAS_ONE_THREAD_LIMIT
    f = features._analysis(settings.with_changes(formants=True)).formants
    assert f is not None
    assert f.rows >= 1 and f.rows * max(f.basis.size, f.cos.size) <= features.BLAS_ONE_THREAD_LIMIT


def test_one_fft_per_frame(monkeypatch):
    """The whole analysis of a frame comes from one forward FFT (the pitch reuses its power spectrum)."""
    transformed = []
    real_rfft = np.fft.rfft

    def counting_rfft(a, *args, **kwargs):
        transformed.append(np.shape(a)[0] if np.ndim(a) > 1 else 1)
        return real_rfft(a, *args, **kwargs)

    monkeypatch.setattr(np.fft, "rfft", counting_rfft)
    stats = analyse_frames(voice(200, 3.0), S)
    assert sum(transformed) == len(stats) == frame_count(3 * SR, S)


def test_cepstra_are_the_log_mel_dct_of_the_tilted_frame_spectrum(rng):
    """An independent, written-out computation with librosa's filter bank and SciPy's DCT as oracles."""
    librosa = pytest.importorskip("librosa")
    scipy_fft = pytest.importorskip("scipy.fft")
    y = voice(150, 1.0, noise=0.01) + 0.03
    stats = analyse_frames(y, S)
    n_fft = 1024  # twice the frame: room for the autocorrelation
    frames = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), S.frame_length)[:: S.hop_length]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(S.frame_length + 1)[:-1]
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2
    # Pre-emphasis y[n] - a y[n-1] as its filter's power response |1 - a e^{-jw}|^2
    emphasis = np.abs(1 - S.pre_emphasis * np.exp(-2j * np.pi * np.fft.rfftfreq(n_fft)))
    bank = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=S.n_mels, fmin=S.fmin, fmax=S.fmax)
    log_mel = 10 * np.log10(np.maximum((power * emphasis**2) @ bank.T, 1e-10))
    expected = scipy_fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, : S.n_mfcc]
    np.testing.assert_allclose(stats.cepstra, expected, atol=2e-3, rtol=0)


def test_spectral_tilt_acts_like_time_domain_pre_emphasis(rng):
    y = voice(180, 2.0, noise=0.01)
    emphasised = np.append(y[0], y[1:] - S.pre_emphasis * y[:-1]).astype(np.float32)
    tilted = analyse_frames(y, S).cepstra
    filtered = analyse_frames(emphasised, S.with_changes(pre_emphasis=0.0)).cepstra
    untilted = analyse_frames(y, S.with_changes(pre_emphasis=0.0)).cepstra
    # Not identical (the window cuts the filter's memory at frame edges), but the same envelope: the
    # level and slope (c0, c1) differ by 0.1-0.15 on average, against 40-60 without the tilt.
    assert np.abs(tilted - filtered)[:, :2].mean() < 0.5
    assert np.abs(tilted - untilted)[:, :2].mean() > 20


# -- level ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amplitude", [1.0, 0.1, 0.001])
def test_energy_is_the_mean_square_in_dbfs(amplitude):
    t = np.arange(SR) / SR
    stats = analyse_frames((amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), S)
    np.testing.assert_allclose(stats.energy_db, 20 * np.log10(amplitude / np.sqrt(2)), atol=0.1)


def test_dc_and_rumble_carry_no_energy():
    t = np.arange(SR) / SR
    assert analyse_frames(np.full(SR, 0.5, np.float32), S).energy_db.max() < -100
    rumble = analyse_frames((0.5 * np.sin(2 * np.pi * 15 * t)).astype(np.float32), S).energy_db
    # A 15 Hz rumble at -9 dBFS counts only through the 32 ms window's leakage above fmin (-30 dBFS).
    assert np.median(rumble) < -25


@pytest.mark.parametrize("offset", [0.05, -0.3])
def test_a_dc_offset_changes_nothing(offset):
    x = voice(200, 4.0, noise=0.002)
    plain, shifted = analyse_frames(x, S), analyse_frames(x + np.float32(offset), S)
    # float32 samples: the offset costs a few bits of the voice, nothing more
    assert_stats_close(plain, shifted, cepstra_atol=2e-3)


# -- pitch and voicing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("f0", [90, 120, 180, 220, 300])
@pytest.mark.parametrize("make", [harmonic_tone, glottal_pulses], ids=["harmonics", "pulses"])
def test_pitch_of_voiced_sounds(make, f0):
    stats = analyse_frames(make(f0), S)
    assert abs(np.median(stats.f0) / f0 - 1) < 0.03, np.median(stats.f0)
    assert np.median(stats.voicing) > 0.8


@pytest.mark.parametrize("exponent,voiced_share", [(0, 0.2), (1, 0.2)], ids=["white", "pink"])
def test_noise_is_not_voiced(rng, exponent, voiced_share):
    """Voices score above 0.8; noise about 0.4. Some noise frames pass the voicing threshold on their
    own (white ~15 %, measured), but never a run long enough to count as a speech region."""
    stats = analyse_frames((0.1 * coloured_noise(rng, 3 * SR, exponent)).astype(np.float32), S)
    assert np.median(stats.voicing) < 0.45
    assert np.mean(stats.voicing > S.vad_voicing) < voiced_share
    run = int(round(S.vad_min_region_seconds / S.frame_seconds))
    assert np.convolve(stats.voicing > S.vad_voicing, np.ones(run), "valid").max() < run


@pytest.mark.parametrize("f0", [110, 220])
def test_dc_and_level_do_not_change_the_pitch(f0):
    y = glottal_pulses(f0)
    reference = analyse_frames(y, S)
    for variant in (y + np.float32(0.1), y * np.float32(0.1), y * np.float32(5.0)):
        stats = analyse_frames(variant, S)
        np.testing.assert_allclose(stats.f0, reference.f0, rtol=1e-4)
        np.testing.assert_allclose(stats.voicing, reference.voicing, atol=1e-3)


def test_quiet_frames_get_no_pitch():
    stats = analyse_frames(harmonic_tone(200, level=1e-4), S)  # -80 dBFS, below the speech floor
    assert not stats.f0.any() and not stats.voicing.any()


def test_pitch_columns():
    stats = FrameStats(0, np.zeros((3, S.n_mfcc), np.float32), np.zeros(3, np.float32),
                       np.array([0.9, 0.2, 0.6], np.float32), np.array([300.0, 120.0, 75.0], np.float32),
                       np.zeros((3, N_FORMANTS), np.float32))
    columns = pitch_columns(stats, 0.45)
    assert columns.dtype == np.float32 and columns.shape == (3, 2)
    np.testing.assert_allclose(columns[:, 0], [np.log2(300 / PITCH_REFERENCE_HZ), 0.0, -1.0])
    np.testing.assert_allclose(columns[:, 1], stats.voicing)


def test_dct_and_window_match_scipy():
    scipy = pytest.importorskip("scipy")
    eye = np.eye(S.n_mels)
    np.testing.assert_allclose(dct_matrix(S.n_mfcc, S.n_mels), scipy.fft.dct(eye, type=2, norm="ortho", axis=0)
                               [: S.n_mfcc], atol=1e-12)
    np.testing.assert_allclose(hann_window(512), scipy.signal.get_window("hann", 512, fftbins=True), atol=1e-12)

def _sample(shared_data, corpus: str, step: int):
    from edge.audio import AUDIO_EXTENSIONS

    files = sorted(p for p in (shared_data / corpus).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    return files[::step]


@pytest.mark.shared
@pytest.mark.parametrize("corpus,step", [("indonesian", 6), ("ravdess", 60), ("urdu", 20)])
def test_matches_librosa_on_real_speech(shared_data, corpus, step):
    from edge.audio import load_audio

    files = _sample(shared_data, corpus, step)
    assert len(files) >= 15
    worst = 0.0
    for path in files:
        y, _ = load_audio(path)
        diff = float(np.abs(mfcc(y) - librosa_mfcc(y)).max())
        worst = max(worst, diff)
        assert diff <= TOLERANCE, f"{path.name}: max abs diff {diff}"
    print(f"{corpus}: {len(files)} files, max abs diff {worst:.2e}")


# -- formants -------------------------------------------------------------------------------------
F = S.with_changes(formants=True)


def vowel(f0: float, formants: tuple[float, ...], seconds: float = 1.0, level: float = 0.3) -> np.ndarray:
    """A pulse train at ``f0`` through second-order resonators at ``formants`` (bandwidths 80-120 Hz)."""
    x = np.zeros(int(seconds * SR))
    x[:: int(SR / f0)] = 1.0
    for freq, bandwidth in zip(formants, (80.0, 100.0, 120.0), strict=True):
        r, theta = np.exp(-np.pi * bandwidth / SR), 2 * np.pi * freq / SR
        out = np.zeros_like(x)  # y[n] = (1 - r) x[n] + 2 r cos(theta) y[n-1] - r^2 y[n-2]
        for n in range(x.size):
            out[n] = (1 - r) * x[n] + 2 * r * np.cos(theta) * out[n - 1] - r * r * out[n - 2]
        x = out
    return (level * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("f0, formants", [
    (110.0, (700.0, 1220.0, 2600.0)),  # a man's /a/
    (120.0, (300.0, 2300.0, 3000.0)),  # a man's /i/
    (220.0, (850.0, 1400.0, 2900.0)),  # a woman's /a/
])
def test_formants_of_synthetic_vowels(f0, formants):
    stats = analyse_frames(vowel(f0, formants), F)
    voiced = stats.voicing > F.vad_voicing
    assert voiced.mean() > 0.9
    # Linear prediction leans towards the nearest harmonic: a low F1 (300 Hz at F0 120 Hz) is read ~60 Hz high.
    np.testing.assert_allclose(np.median(stats.formants[voiced], axis=0), formants, rtol=0.05, atol=70.0)


def test_formants_are_measured_only_when_asked_for_and_change_nothing_else():
    y = voice(200, 3.0)
    with_formants, without = analyse_frames(y, F), analyse_frames(y, S)
    assert not without.formants.any() and with_formants.formants.any()
    for name in ("cepstra", "energy_db", "voicing", "f0"):
        np.testing.assert_array_equal(getattr(with_formants, name), getattr(without, name))
    assert F.n_features == S.n_features + N_FORMANTS


def test_formants_do_not_depend_on_the_pieces_or_the_level(rng):
    y = vowel(150.0, (500.0, 1500.0, 2500.0), seconds=3.0) + 0.003 * rng.standard_normal(3 * SR).astype(np.float32)
    whole = analyse_frames(y, F)
    cut = frame_count(len(y) // 2, F)
    halves = FrameStats.join([analyse_frames(y[: cut * F.hop_length + 200], F),
                              analyse_frames(y[cut * F.hop_length :], F, start=cut)])
    np.testing.assert_allclose(halves.formants, whole.formants, atol=1e-3)
    quiet = analyse_frames(y * 0.1, F)
    voiced = whole.voicing > F.vad_voicing
    np.testing.assert_allclose(quiet.formants[voiced], whole.formants[voiced], rtol=0.02)


def test_formant_columns():
    formants = np.array([[550.0, 1600.0, 2700.0], [1100.0, 0.0, 5400.0], [500.0, 1500.0, 2500.0]], np.float32)
    stats = FrameStats(0, np.zeros((3, S.n_mfcc), np.float32), np.zeros(3, np.float32),
                       np.array([0.9, 0.9, 0.2], np.float32), np.full(3, 150.0, np.float32), formants)
    columns = formant_columns(stats, 0.45)
    assert columns.dtype == np.float32 and columns.shape == (3, N_FORMANTS)
    assert FORMANT_REFERENCE_HZ == (550.0, 1600.0, 2700.0)
    np.testing.assert_allclose(columns, [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], atol=1e-6)
