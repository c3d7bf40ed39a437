"""Cleaning: the original recipe's spectral gate, equal to noisereduce.

(Levelling and pre-emphasis are no longer steps on the samples: the window's gain is a shift of c0
and pre-emphasis a tilt of the mel filters, tested in test_pipeline.py and test_features.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.clean import spectral_gate

SR = 16000
# spectral_gate re-implements noisereduce's stationary algorithm step by step (same frame grid, dB
# floor, threshold, smoothing kernel) in float64; the only differences left are FFT rounding
# (NumPy's pocketfft vs SciPy's) and the float32 output, i.e. ~1e-7 of full scale. 1e-5 leaves
# room for library versions while still catching any change of the algorithm (a wrong smoothing
# width or frame grid gave differences of 0.05-0.3 of the signal's RMS).
GATE_ATOL = 1e-5


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)


def noisy(speech: np.ndarray, snr_db: float, rng) -> tuple[np.ndarray, np.ndarray]:
    noise = rng.standard_normal(speech.size)
    noise *= np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise**2)) / 10 ** (snr_db / 20)
    return (speech + noise).astype(np.float32), noise.astype(np.float32)


def synthetic_speech(rng, seconds: float = 3.0) -> np.ndarray:
    """Harmonic 'vowels' with a moving pitch, separated by pauses: enough structure for a gate."""
    t = np.arange(int(seconds * SR)) / SR
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 2.0 * t) > 0.2).astype(float)
    return (0.1 * voiced * envelope).astype(np.float32)


def test_matches_noisereduce_on_synthetic_speech(rng):
    nr = pytest.importorskip("noisereduce")
    speech = synthetic_speech(rng)
    for length in (48000, 20000, 5000, 1500):
        x, _ = noisy(speech[:length], 5.0, rng)
        ours = spectral_gate(x, SR)
        ref = nr.reduce_noise(y=x, sr=SR, stationary=True)
        assert ours.shape == x.shape and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=GATE_ATOL, rtol=0)


def test_matches_noisereduce_with_partial_decrease(rng):
    nr = pytest.importorskip("noisereduce")
    x, _ = noisy(synthetic_speech(rng), 10.0, rng)
    ours = spectral_gate(x, SR, prop_decrease=0.7, n_std_thresh=2.0)
    ref = nr.reduce_noise(y=x, sr=SR, stationary=True, prop_decrease=0.7, n_std_thresh_stationary=2.0)
    np.testing.assert_allclose(ours, ref, atol=GATE_ATOL, rtol=0)


@pytest.mark.shared
def test_matches_noisereduce_on_real_speech_with_noise(shared_data, rng):
    """Real speech from each corpus + white noise at 5 dB SNR: same output, and the noise goes down."""
    nr = pytest.importorskip("noisereduce")
    from edge.audio import load_audio

    clips = [
        shared_data / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.flac",
        shared_data / "ravdess" / "Actor_02" / "03-01-05-02-01-01-02.flac",
        shared_data / "indonesian" / "cowo" / "m010.m4a",
        shared_data / "indonesian" / "cewe" / "f005.opus",
        sorted((shared_data / "urdu" / "Happy").glob("*.flac"))[0],
    ]
    for path in clips:
        speech, _ = load_audio(path)
        speech = speech[:48000]
        x, noise = noisy(speech, 5.0, rng)
        ours = spectral_gate(x, SR)
        ref = nr.reduce_noise(y=x, sr=SR, stationary=True)
        np.testing.assert_allclose(ours, ref, atol=GATE_ATOL, rtol=0, err_msg=path.name)
        assert np.corrcoef(ours, ref)[0, 1] > 0.9999
        # The quietest 10 % of 32 ms frames of the clean clip are pauses: there, the gate must cut
        # the added noise by more than 10 dB (it is a noise gate, whatever it does to speech).
        frames = speech[: speech.size // 512 * 512].reshape(-1, 512)
        pauses = np.argsort(np.mean(frames**2, axis=1))[: max(1, frames.shape[0] // 10)]
        before = rms_db(x[: frames.size].reshape(-1, 512)[pauses])
        after = rms_db(ours[: frames.size].reshape(-1, 512)[pauses])
        assert before - after > 10, f"{path.name}: only {before - after:.1f} dB less noise in pauses"


def test_gate_leaves_silence_and_short_input_alone(rng):
    assert not np.any(spectral_gate(np.zeros(48000, np.float32), SR))
    short = rng.standard_normal(500).astype(np.float32)
    np.testing.assert_array_equal(spectral_gate(short, SR), short)
