"""Speech detection: noise of every colour, hum and silence are never speech; real speech is, also with
a DC offset, under white noise at 10-12 dB SNR, or clipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.audio import load_audio
from edge.features import N_FORMANTS, FrameStats, analyse_frames
from edge.pipeline import window_inputs
from edge.settings import DEFAULT_SETTINGS
from edge.vad import drop_short_regions, regions, speech_mask

from signals import coloured_noise, voice

SR = 16000
SAMPLES = Path(__file__).resolve().parent.parent / "models" / "samples"
LEVELS_DBFS = (-70, -50, -30, -20, -10)


def hum(n: int, f0: float, harmonics: int = 5) -> np.ndarray:
    t = np.arange(n) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, harmonics + 1))
    return y / np.sqrt(np.mean(y**2))


def room_noise(rng, n: int) -> np.ndarray:
    """Ventilation-like rumble with a slow level drift, plus a little mains hum."""
    y = coloured_noise(rng, n, 1.5) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * np.arange(n) / SR)) + 0.3 * hum(n, 50)
    return y / np.sqrt(np.mean(y**2))


def voiced(rng, seconds: float) -> np.ndarray:
    """Speech-like: the shared test voice with a gliding pitch and breath noise."""
    return voice(170, seconds, seed=int(rng.integers(1000)), noise=0.002)


def mask_of(y: np.ndarray, settings=DEFAULT_SETTINGS) -> np.ndarray:
    """The speech mask of a whole signal analysed as one window."""
    return speech_mask(analyse_frames(np.asarray(y, np.float32), settings), settings)


def speech_seconds(y: np.ndarray, settings=DEFAULT_SETTINGS) -> float:
    return float(mask_of(y, settings).sum()) * settings.frame_seconds


NOISES = {
    "silence": lambda rng, n: np.zeros(n),
    "white": lambda rng, n: coloured_noise(rng, n, 0),
    "pink": lambda rng, n: coloured_noise(rng, n, 1),
    "brown": lambda rng, n: coloured_noise(rng, n, 2),
    "hum50": lambda rng, n: hum(n, 50),
    "hum60": lambda rng, n: hum(n, 60),
    "hum100": lambda rng, n: hum(n, 100),
    "hum120": lambda rng, n: hum(n, 120),
    "room": room_noise,
}


# Rumble-like noise (1/f^2, and the room noise built on it) once scored voicing above threshold in
# ~70 % of frames, so only a window's noise floor rejected it and noise after silence passed; the
# pitch band's +3 dB/octave tilt whitens it (these cases failed before that change).
# The original recipe's spectral gating (noise_reduction, never on in the shipped models) leaves
# musical noise: in loud room and brown noise its sporadic voiced frames, one frame apart, are joined
# by the one-frame gap bridge past 0.5 s. Measured 2026-12-01; strict, so a fix turns it red.
GATED_NOISE_PASSES = {("brown", -10), ("room", -20), ("room", -10)}


def _noise_cases():
    for name in sorted(NOISES):
        for level in LEVELS_DBFS:
            for noise_reduction in (False, True):
                marks = [pytest.mark.xfail(strict=True, reason="musical noise of spectral gating, bridged")] if (
                    noise_reduction and (name, level) in GATED_NOISE_PASSES) else []
                yield pytest.param(name, level, noise_reduction, marks=marks,
                                   id=f"{'denoised' if noise_reduction else 'raw'}-{level}-{name}")


@pytest.mark.parametrize("name,level,noise_reduction", _noise_cases())
def test_noise_is_never_speech(rng, name, level, noise_reduction):
    settings = DEFAULT_SETTINGS.with_changes(noise_reduction=noise_reduction)
    y = (NOISES[name](rng, 6 * SR) * 10 ** (level / 20)).astype(np.float32)
    windows = window_inputs(y, settings)
    assert all(w.features is None for w in windows)
    assert speech_seconds(y, settings) < settings.min_speech_seconds


@pytest.mark.parametrize("name", ["white", "pink", "brown", "hum50", "hum60", "room"])
def test_noise_starting_after_silence_is_not_speech(rng, name):
    y = NOISES[name](rng, 6 * SR) * 10 ** (-25 / 20)
    y[: int(1.5 * SR)] = 0.0
    assert all(w.features is None for w in window_inputs(y.astype(np.float32), DEFAULT_SETTINGS))


@pytest.mark.parametrize("f0", [100, 120, 150, 200])
def test_buzz_starting_after_silence(f0):
    # Loud and periodic at a speaking pitch, but perfectly steady: the steadiness test rejects it.
    y = hum(6 * SR, f0) * 10 ** (-25 / 20)
    y[: int(1.5 * SR)] = 0.0
    assert all(w.features is None for w in window_inputs(y.astype(np.float32), DEFAULT_SETTINGS))


def test_speech_over_a_steady_buzz_is_still_speech(rng):
    y = voiced(rng, 4.0)
    buzz = hum(y.size, 120) * np.sqrt(np.mean(y**2)) * 10 ** (-10 / 20)
    mixed = np.concatenate([np.zeros(SR // 2), y + buzz]).astype(np.float32)
    assert speech_seconds(mixed) > 2.4  # the voice alone: 2.6 s of 4 (its syllables have gaps)


def test_a_held_vowel_with_vibrato_is_speech(rng):
    # A sung or drawn-out vowel: pitch wobbles a few percent (vibrato) and the level swells.
    t = np.arange(3 * SR) / SR
    pitch = 220 * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.7 + 0.3 * np.sin(2 * np.pi * 1.5 * t))
    y = (0.1 * y + 0.002 * rng.standard_normal(t.size)).astype(np.float32)
    assert speech_seconds(np.concatenate([np.zeros(SR // 2, np.float32), y])) > 2.0


def test_voiced_signal_is_speech(rng):
    y = voiced(rng, 3.0)
    assert speech_seconds(y) > 2.0
    # ...also with noise underneath and after a pause
    quiet = np.concatenate([np.zeros(SR, np.float32), y]) + 0.005 * rng.standard_normal(4 * SR).astype(np.float32)
    mask = mask_of(quiet)
    per_second = 1 / DEFAULT_SETTINGS.frame_seconds
    assert mask[: int(0.8 * per_second)].sum() == 0  # the leading pause
    assert mask[int(1.2 * per_second) :].mean() > 0.6


@pytest.mark.parametrize("offset", [0.05, -0.05, 0.3])
def test_a_dc_offset_does_not_change_the_speech_mask(rng, offset):
    y = np.concatenate([np.zeros(SR, np.float32), voiced(rng, 3.0)])
    expected = mask_of(y)
    assert expected.sum() * DEFAULT_SETTINGS.frame_seconds > 1.5
    np.testing.assert_array_equal(mask_of(y + np.float32(offset)), expected)


def test_quiet_voice_with_a_one_percent_dc_offset_is_speech():
    """A cheap microphone: the bundled male voice at a tenth of its level plus a 1 % DC offset."""
    y, _ = load_audio(SAMPLES / "male_16k.flac")
    clean = [w.speech_seconds for w in window_inputs(y * np.float32(0.1), DEFAULT_SETTINGS)]
    offset = window_inputs(y * np.float32(0.1) + np.float32(0.01), DEFAULT_SETTINGS)
    assert all(w.features is not None for w in offset)
    assert [w.speech_seconds for w in offset] == clean


@pytest.mark.parametrize("snr_db", [10, 12])
@pytest.mark.parametrize("f0", [110, 220])
def test_voice_under_white_noise_is_speech(rng, snr_db, f0):
    """White noise at 10-12 dB SNR under a voice: its frames are still found, the noise alone is not."""
    speech = voice(f0, 4.0, seed=f0)
    noise = rng.standard_normal(6 * SR)
    noise *= np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise**2)) / 10 ** (snr_db / 20)
    y = (np.concatenate([np.zeros(2 * SR, np.float32), speech]) + noise).astype(np.float32)
    mask = mask_of(y)
    per_second = round(1 / DEFAULT_SETTINGS.frame_seconds)
    assert mask[: int(1.8 * per_second)].mean() < 0.05  # the noise before the voice
    assert mask[int(2.2 * per_second) :].mean() > 0.6  # the voice
    windows = window_inputs(y, DEFAULT_SETTINGS)
    assert windows[-1].features is not None and windows[-1].speech_seconds > 2.0


@pytest.mark.parametrize("gain", [10, 50])
def test_a_clipped_voice_is_still_speech(rng, gain):
    y = voiced(rng, 3.0)
    clipped = np.clip(y * gain, -1.0, 1.0)
    assert np.mean(np.abs(clipped) >= 1.0) > 0.1  # really clipped
    assert speech_seconds(clipped) > 0.75 * speech_seconds(y)


def test_vad_off_keeps_everything(rng):
    y = coloured_noise(rng, SR, 0).astype(np.float32)
    off = DEFAULT_SETTINGS.with_changes(vad=False)
    assert mask_of(y, off).all() and mask_of(y, off).size == 49


def test_short_inputs():
    assert mask_of(np.zeros(100, np.float32)).size == 0
    assert speech_mask(FrameStats.empty(0, DEFAULT_SETTINGS.n_mfcc), DEFAULT_SETTINGS).size == 0
    one_frame = mask_of(voiced(np.random.default_rng(0), 0.032))
    assert one_frame.shape == (1,) and not one_frame.any()  # shorter than the shortest region


def synthetic_stats(voiced_frames: range) -> FrameStats:
    """2 s of frames: 1 s of silence, then 1 s of loud unvoiced sound with ``voiced_frames`` voiced in it."""
    n = 100
    energy = np.where(np.arange(n) < 50, -120.0, -30.0).astype(np.float32)
    voicing = np.full(n, 0.2, np.float32)
    voicing[list(voiced_frames)] = 0.9
    f0 = np.where(energy > -55, 100.0 + 37.0 * (np.arange(n) % 7), 0.0).astype(np.float32)  # never steady
    return FrameStats(0, np.zeros((n, DEFAULT_SETTINGS.n_mfcc), np.float32), energy, voicing, f0,
                      np.zeros((n, N_FORMANTS), np.float32))


@pytest.mark.parametrize("voiced_frames", [range(70, 71), range(70, 72), range(70, 74)])
def test_voiced_blips_shorter_than_a_region_are_not_speech(voiced_frames):
    """The hangover (0.12 s each side) must not widen a noise blip into a 0.26 s region of 'speech'."""
    assert not speech_mask(synthetic_stats(voiced_frames), DEFAULT_SETTINGS).any()


def test_a_voiced_region_gets_its_hangover():
    mask = speech_mask(synthetic_stats(range(70, 76)), DEFAULT_SETTINGS)  # 0.12 s voiced
    hang = round(DEFAULT_SETTINGS.vad_hangover_seconds / DEFAULT_SETTINGS.frame_seconds)
    assert np.flatnonzero(mask).tolist() == list(range(70 - hang, 76 + hang))


def test_regions_and_short_region_removal():
    mask = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    starts, ends = regions(mask)
    assert starts.tolist() == [1, 4, 9] and ends.tolist() == [3, 8, 10]
    np.testing.assert_array_equal(drop_short_regions(mask, 3), [0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    assert drop_short_regions(mask, 1) is mask
    assert regions(np.zeros(0, dtype=bool))[0].size == 0


@pytest.mark.shared
@pytest.mark.parametrize("corpus,step", [("indonesian", 2), ("ravdess", 7), ("urdu", 2)])
def test_real_speech_is_found(shared_data, corpus, step):
    """At least 97 % of the clips yield a window with >= 0.5 s of speech (measured on all files with the
    previous detector: indonesian 102/102, ravdess 1421/1434, urdu 399/400). The noise gate is not
    combined with speech detection here: only the original recipe uses the gate, and it has no VAD."""
    settings = DEFAULT_SETTINGS
    from edge.audio import AUDIO_EXTENSIONS

    files = sorted(p for p in (shared_data / corpus).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)[::step]
    assert files, f"no audio under {shared_data / corpus}"
    missed = []
    for path in files:
        y, _ = load_audio(path)
        if not any(w.features is not None for w in window_inputs(y, settings)):
            missed.append(path.name)
    recall = 1 - len(missed) / len(files)
    print(f"{corpus}: {len(files) - len(missed)}/{len(files)} clips with speech; missed {missed}")
    assert recall >= 0.97, missed


def test_single_frame_gaps_are_bridged_and_nothing_else():
    from edge.vad import bridge_single_gaps

    mask = np.array([0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)
    expected = np.array([0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0], dtype=bool)
    assert np.array_equal(bridge_single_gaps(mask), expected)
    assert not bridge_single_gaps(np.zeros(5, dtype=bool)).any()
    assert bridge_single_gaps(np.zeros(0, dtype=bool)).size == 0


def test_a_low_voice_with_voicing_dropouts_keeps_its_syllables(rng):
    """A 95 Hz voice whose every third frame is unvoiced (breathy dropouts) is still 1.2 s of speech."""
    y = voice(95, 1.2, seed=int(rng.integers(1000)), noise=0.002)
    stats = analyse_frames(y.astype(np.float32), DEFAULT_SETTINGS)
    dropouts = stats.voicing.copy()
    dropouts[::3] = 0.0
    choppy = FrameStats(stats.start, stats.cepstra, stats.energy_db, dropouts, stats.f0, stats.formants)
    assert speech_mask(choppy, DEFAULT_SETTINGS).sum() >= speech_mask(stats, DEFAULT_SETTINGS).sum() - 2

# -- the vectorised steps equal straightforward loops, to the bit ---------------------------------

def steady_runs_loop(f0: np.ndarray, energy_db: np.ndarray, min_frames: int) -> np.ndarray:
    """The frame-by-frame definition: a run is anchored at its first frame and lasts while frames
    stay within 2 % of its pitch and 3 dB of its level."""
    n = f0.size
    steady = np.zeros(n, dtype=bool)
    start = 0
    for i in range(1, n + 1):
        if (i < n and f0[start] > 0 and abs(f0[i] - f0[start]) <= 0.02 * f0[start]
                and abs(energy_db[i] - energy_db[start]) <= 3.0):
            continue
        if i - start >= min_frames:
            steady[start:i] = True
        start = i
    return steady


def drop_short_regions_loop(mask: np.ndarray, min_frames: int) -> np.ndarray:
    out = mask.copy()
    if min_frames > 1:
        for start, end in zip(*regions(mask), strict=True):
            if end - start < min_frames:
                out[start:end] = False
    return out


def widen_convolve(mask: np.ndarray, frames: int) -> np.ndarray:
    kernel = np.ones(2 * frames + 1)
    return np.convolve(mask.astype(float), kernel, mode="full")[frames : frames + mask.size] > 0


def speech_mask_reference(stats: FrameStats, settings) -> np.ndarray:
    """speech_mask as it was written first: np.percentile, the loops and the convolution (plus the
    one-frame gap bridge, written out)."""
    energy = stats.energy_db
    loud = (energy > settings.vad_energy_dbfs) & (energy > np.percentile(energy, 10) + 6.0)
    voiced = loud & (stats.voicing > settings.vad_voicing)
    if voiced.any():
        voiced &= ~steady_runs_loop(np.where(loud, stats.f0, 0.0), energy, round(0.6 / settings.frame_seconds))
    voiced = np.array([v or (0 < i < voiced.size - 1 and voiced[i - 1] and voiced[i + 1])
                       for i, v in enumerate(voiced)], dtype=bool)
    shortest = round(settings.vad_min_region_seconds / settings.frame_seconds)
    voiced = drop_short_regions_loop(voiced, shortest)
    voiced = widen_convolve(voiced, round(settings.vad_hangover_seconds / settings.frame_seconds))
    voiced &= energy > settings.vad_energy_dbfs
    return drop_short_regions_loop(voiced, shortest)


def pitch_track(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pitch and level with steady stretches (some longer than the lookahead), glides, unmeasured
    frames, and steps of exactly 2 % and 3 dB (the comparisons' edges)."""
    f0 = np.zeros(n)
    energy = np.zeros(n, np.float32)
    i = 0
    while i < n:
        length = int(rng.choice([1, 2, 5, 29, 30, 31, 45, 80]))
        kind = rng.integers(4)
        base, level = rng.uniform(60, 400), np.float32(rng.uniform(-60, -10))
        seg = slice(i, min(i + length, n))
        size = seg.stop - seg.start
        if kind == 0:  # unmeasured
            f0[seg] = 0.0
        elif kind == 1:  # steady, within the tolerances
            f0[seg] = base * (1 + rng.uniform(-0.019, 0.019, size))
        elif kind == 2:  # exactly on the edges
            f0[seg] = base * rng.choice([1.0, 1.02, 0.98], size)
        else:  # gliding
            f0[seg] = base * (1 + 0.01 * np.arange(size))
        energy[seg] = level + rng.choice(np.float32([0.0, 3.0, -3.0, 2.9999998, 3.0000002, 1.5]), size)
        i = seg.stop
    return f0, energy


def test_steady_runs_equal_the_frame_by_frame_loop(rng):
    from edge.vad import _steady_runs

    for n in [0, 1, 2, 29, 30, 31, 60, 150, 151, 400]:
        for _ in range(25):
            f0, energy = pitch_track(rng, n)
            for min_frames in (1, 5, 30):
                np.testing.assert_array_equal(_steady_runs(f0, energy, min_frames),
                                              steady_runs_loop(f0, energy, min_frames))
    hum_track = np.full(300, 120.0)  # one run over everything: longer than the lookahead
    np.testing.assert_array_equal(_steady_runs(hum_track, np.zeros(300, np.float32), 30), np.ones(300, bool))


def test_percentile_equals_numpy(rng):
    from edge.vad import percentile

    for n in [1, 2, 3, 7, 10, 11, 149, 150, 151]:
        for _ in range(20):
            values = rng.normal(-50, 20, n).astype(np.float32)
            if rng.random() < 0.3:
                values = np.round(values / 10) * 10  # ties
            for q in (0, 10, 25, 50, 90, 99.9, 100):
                got, want = percentile(values.copy(), q), np.percentile(values, q)
                assert got.dtype == want.dtype and got.tobytes() == np.asarray(want).tobytes(), (n, q)


def test_widen_and_drop_short_regions_equal_the_loops(rng):
    from edge.vad import widen

    for n in [1, 2, 5, 12, 13, 14, 150]:
        for _ in range(50):
            mask = rng.random(n) < rng.uniform(0.05, 0.9)
            for frames in (1, 3, 6):
                np.testing.assert_array_equal(widen(mask, frames), widen_convolve(mask, frames))
            for shortest in (1, 2, 5):
                np.testing.assert_array_equal(drop_short_regions(mask, shortest),
                                              drop_short_regions_loop(mask, shortest))


def test_speech_mask_equals_the_reference(rng):
    settings = DEFAULT_SETTINGS
    for n in [1, 5, 40, 150]:
        for _ in range(40):
            f0, energy = pitch_track(rng, n)
            energy = np.where(rng.random(n) < 0.2, np.float32(-90.0), energy).astype(np.float32)
            voicing = rng.uniform(0, 1, n).astype(np.float32)
            stats = FrameStats(0, np.zeros((n, settings.n_mfcc), np.float32), energy, voicing, f0.astype(np.float32),
                               np.zeros((n, N_FORMANTS), np.float32))
            np.testing.assert_array_equal(speech_mask(stats, settings), speech_mask_reference(stats, settings))
