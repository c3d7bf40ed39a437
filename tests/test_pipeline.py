"""Windowing and the shared samples -> model-input path (edge.pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.features import window_features
from edge.clean import level_and_emphasise
from edge.pipeline import aggregate, window_input, window_inputs, window_starts
from edge.settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS
from edge.vad import speech_samples

SR = 16000


def voiced(rng, seconds: float, f0: float = 170.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 + 40 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.1 * y + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("seconds,hop,expected", [
    (10.0, 1.0, [0, 1, 2, 3, 4, 5, 6, 7]),
    (10.0, 3.0, [0, 3, 6, 7]),      # the last window is pulled back to end with the signal
    (3.0, 1.0, [0]),
    (2.0, 1.0, [0]),                # shorter than a window: one (short) window
    (3.5, 0.5, [0, 0.5]),
    (0.1, 1.0, [0]),
])
def test_window_starts(seconds, hop, expected):
    settings = DEFAULT_SETTINGS.with_changes(window_hop_seconds=hop)
    starts = window_starts(int(seconds * SR), settings)
    assert starts == [int(s * SR) for s in expected]
    n = int(seconds * SR)
    assert all(0 <= s and s + min(n, settings.window_samples) <= n for s in starts)


def test_windows_cover_the_signal(rng):
    y = voiced(rng, 10.0)
    windows = window_inputs(y, DEFAULT_SETTINGS, offset=5.0)
    assert [w.start for w in windows] == [5.0 + s / SR for s in window_starts(len(y), DEFAULT_SETTINGS)]
    assert windows[0].start == 5.0 and windows[-1].end == pytest.approx(15.0)
    assert all(w.end - w.start == pytest.approx(3.0) for w in windows)
    assert all(w.features is not None and w.features.shape == (94, 13) for w in windows)


@pytest.mark.parametrize("seconds", [0.6, 1.0, 2.0])
def test_short_clip_is_classified_from_the_speech_it_has(rng, seconds):
    y = voiced(rng, seconds)
    (window,) = window_inputs(y, DEFAULT_SETTINGS)
    assert window.features is not None
    assert window.speech_seconds >= 0.5
    assert window.end == pytest.approx(seconds)
    # Fewer frames than a full window: the model takes a dynamic time axis.
    assert window.features.shape[0] == 1 + int(window.speech_seconds * SR) // DEFAULT_SETTINGS.hop_length


@pytest.mark.parametrize("seconds", [0.1, 0.3])
def test_too_little_speech_gives_no_input(rng, seconds):
    (window,) = window_inputs(voiced(rng, seconds), DEFAULT_SETTINGS)
    assert window.features is None and window.speech_seconds < 0.5


def test_all_zero_audio_has_no_speech_windows():
    windows = window_inputs(np.zeros(10 * SR, np.float32), DEFAULT_SETTINGS)
    assert windows and all(w.features is None and w.speech_seconds == 0 for w in windows)


def test_silence_around_speech(rng):
    y = np.concatenate([np.zeros(4 * SR), voiced(rng, 3.0), np.zeros(4 * SR)]).astype(np.float32)
    settings = DEFAULT_SETTINGS.with_changes(window_hop_seconds=3.0)
    windows = window_inputs(y, settings)
    with_speech = [w for w in windows if w.features is not None]
    assert windows[0].features is None and windows[-1].features is None
    assert with_speech and all(1.0 < w.end and w.start < 7.0 for w in with_speech)


def test_window_input_is_the_documented_composition(rng):
    y = voiced(rng, 3.0) + 0.01 * rng.standard_normal(3 * SR).astype(np.float32)
    window = window_input(y, DEFAULT_SETTINGS)
    speech = speech_samples(y, DEFAULT_SETTINGS)
    expected = window_features(level_and_emphasise(speech, DEFAULT_SETTINGS), DEFAULT_SETTINGS)
    np.testing.assert_array_equal(window.features, expected)
    assert window.speech_seconds == speech.size / SR


def test_features_do_not_depend_on_level(rng):
    # Speech detection uses an absolute -60 dBFS floor, so compare the same speech samples.
    speech = speech_samples(voiced(rng, 3.0), DEFAULT_SETTINGS)
    a = window_features(level_and_emphasise(speech, DEFAULT_SETTINGS), DEFAULT_SETTINGS)
    b = window_features(level_and_emphasise(speech * 0.05, DEFAULT_SETTINGS), DEFAULT_SETTINGS)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_tenth_of_a_second_of_loud_speech_is_not_enough(rng):
    for n in (1, 511, 512, 1600):
        (window,) = window_inputs(voiced(rng, 1.0)[:n], DEFAULT_SETTINGS)
        assert window.features is None and window.speech_seconds <= n / SR


def test_original_recipe_runs_noise_reduction_and_keeps_everything(rng):
    y = voiced(rng, 9.0) + 0.02 * rng.standard_normal(9 * SR).astype(np.float32)
    windows = window_inputs(y, ORIGINAL_SETTINGS)
    assert [w.start for w in windows] == [0.0, 3.0, 6.0]
    assert all(w.speech_seconds == pytest.approx(3.0) for w in windows)
    assert all(w.features is not None and np.isfinite(w.features).all() for w in windows)


def test_features_are_finite_on_odd_inputs(rng):
    for y in (np.full(SR, 0.5, np.float32), np.sign(voiced(rng, 2.0)) * 0.9):
        for w in window_inputs(y.astype(np.float32), DEFAULT_SETTINGS):
            assert w.features is None or np.isfinite(w.features).all()


def test_aggregate_weights_by_speech():
    assert aggregate(np.array([0.9, 0.1]), np.array([3.0, 1.0])) == pytest.approx(0.7)
    assert aggregate(np.array([0.2, 0.6]), np.array([0.0, 0.0])) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        aggregate(np.array([]), np.array([]))
