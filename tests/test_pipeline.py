"""From samples to model inputs (edge.pipeline): frames analysed once, windows as slices of them.

The promises of the one-pass front end, each tested so that it can fail: the cursor gives the same
windows whatever the block size; a window depends only on its own frames; every frame is analysed
once however much the windows overlap; the last window follows one rule; streams get a window at
every step; memory stays bounded on long input; overlapping windows' speech is counted once.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edge.features import FrameStats, analyse_frames, frame_count, pitch_columns
from edge.pipeline import (
    FrameCursor,
    SpeechUnion,
    WindowInput,
    aggregate,
    decide,
    normalize_window,
    window_input,
    window_inputs,
)
from edge.settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS
from edge.vad import speech_mask

from signals import voice

SR = 16000
S = DEFAULT_SETTINGS


def samples_for(frames: int) -> int:
    """Samples that hold exactly ``frames`` frames."""
    return S.frame_length + (frames - 1) * S.hop_length


def conversation() -> np.ndarray:
    """9.5 s: a woman, a pause, a man: windows with speech, without, and half and half."""
    pause = np.zeros(int(3.5 * SR), np.float32)
    return np.concatenate([voice(220, 3.0, seed=1, noise=0.002), pause, voice(110, 3.0, seed=2, noise=0.002)])


def assert_same_windows(got: list[WindowInput], expected: list[WindowInput]) -> None:
    assert [(w.first_frame, w.start, w.end, w.speech_seconds) for w in got] == \
        [(w.first_frame, w.start, w.end, w.speech_seconds) for w in expected]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.speech_mask, b.speech_mask)
        assert (a.features is None) == (b.features is None)
        if a.features is not None:
            np.testing.assert_allclose(a.features, b.features, atol=1e-4, rtol=0)


def push_in_blocks(cursor: FrameCursor, y: np.ndarray, size: int) -> list[WindowInput]:
    windows = []
    for start in range(0, len(y), size):
        windows += cursor.push(y[start : start + size])
    return windows + cursor.finish()


# -- one pass -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [100, 3000, 16001, None], ids=["100", "3000", "16001", "whole"])
def test_block_size_does_not_change_the_windows(size):
    y = conversation()
    expected = window_inputs(y, S)
    assert len(expected) == 7 and any(w.features is None for w in expected)  # the pause: a window without speech
    assert_same_windows(push_in_blocks(FrameCursor(S), y, size or len(y)), expected)


def test_one_sample_at_a_time_gives_the_same_windows():
    y = conversation()[: samples_for(S.window_frames + S.window_hop_frames + 30)]
    assert_same_windows(push_in_blocks(FrameCursor(S), y, 1), window_inputs(y, S))


def test_a_window_is_its_own_frames_and_nothing_else():
    """Overlapping windows share frames: a window equals the one computed from its samples alone."""
    y = conversation()
    for window in window_inputs(y, S)[1:]:  # windows that start after the signal does
        n = window.speech_mask.size
        alone = analyse_frames(y[window.first_frame * S.hop_length :][: samples_for(n)], S, start=window.first_frame)
        assert_same_windows([window_input(alone, S)], [window])


def test_every_frame_is_analysed_once_however_much_windows_overlap(monkeypatch):
    y = voice(200, 10.0)
    transformed = []
    real_rfft = np.fft.rfft

    def counting_rfft(a, *args, **kwargs):
        transformed.append(np.shape(a)[0])
        return real_rfft(a, *args, **kwargs)

    monkeypatch.setattr(np.fft, "rfft", counting_rfft)
    windows = push_in_blocks(FrameCursor(S, step_frames=S.frames_in(0.25)), y, 4000)
    assert len(windows) == 30  # every 12 frames from 3 s to 10 s: a frame is in up to 13 windows
    assert sum(transformed) == frame_count(len(y), S)


def test_windows_are_slices_of_the_frame_grid():
    y = voice(180, 10.0)
    frames = analyse_frames(y, S)
    windows = window_inputs(y, S)
    assert [w.first_frame for w in windows] == [0, 50, 100, 150, 200, 250, 300, 349]  # 499 frames: the last moved back
    for w in windows:
        assert w.speech_mask.size == S.window_frames
        assert w.start == pytest.approx(w.first_frame * S.hop_length / SR)
        assert w.end == pytest.approx(((w.first_frame + S.window_frames - 1) * S.hop_length + S.frame_length) / SR)
        assert_same_windows([window_input(frames.rows(w.first_frame, w.first_frame + S.window_frames), S)], [w])


# -- the last window ------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,last_end", [
    (0, None),    # the regular windows end with the signal
    (10, None),   # 10 frames (0.2 s) missed: less than min_speech_seconds, no window for them
    (24, None),
    (25, "end"),  # 0.5 s missed: one window moved back to end with the signal
    (49, "end"),
])
def test_last_window_rule(extra, last_end):
    n = S.window_frames + S.window_hop_frames + extra  # 200 + extra frames
    windows = window_inputs(voice(200, 5.0)[: samples_for(n)], S)
    ends = [w.first_frame + w.speech_mask.size for w in windows]
    assert ends[:2] == [150, 200]
    assert ends[2:] == ([] if last_end is None else [n])
    assert all(w.speech_mask.size == S.window_frames for w in windows)


def test_non_overlapping_windows_add_the_end_of_the_signal():
    # The original recipe's 3 s hop: 9 s give windows at 0 and 3 s and one moved back to end at 9 s.
    windows = window_inputs(voice(200, 9.0), ORIGINAL_SETTINGS)
    assert [round(w.start, 3) for w in windows] == [0.0, 3.008, 5.888]
    assert windows[-1].end == pytest.approx(9.0, abs=ORIGINAL_SETTINGS.hop_length / SR)


@pytest.mark.parametrize("seconds", [0.6, 1.0, 2.0])
def test_a_clip_shorter_than_a_window_is_one_short_window(seconds):
    (window,) = window_inputs(voice(200, seconds, noise=0.002), S)
    assert window.first_frame == 0 and window.speech_mask.size == frame_count(int(seconds * SR), S)
    assert window.end == pytest.approx(seconds, abs=S.hop_length / SR)
    assert window.features is not None and window.speech_seconds >= S.min_speech_seconds
    # the model takes a dynamic time axis: one row per speech frame
    assert window.features.shape == (int(window.speech_mask.sum()), S.n_features)


@pytest.mark.parametrize("n_samples", [0, 1, 511])
def test_less_than_a_frame_gives_no_window(n_samples):
    assert window_inputs(voice(200, 1.0)[:n_samples], S) == []


@pytest.mark.parametrize("seconds", [0.1, 0.3])
def test_too_little_speech_gives_no_input(seconds):
    (window,) = window_inputs(voice(200, seconds), S)
    assert window.features is None and window.speech_seconds < S.min_speech_seconds


# -- streams -------------------------------------------------------------------------------------------

def test_stream_mode_ends_a_window_at_every_step():
    step, length = S.frames_in(0.5), S.window_frames
    y = voice(200, 5.0)
    windows = push_in_blocks(FrameCursor(S, step_frames=step, grow=True), y, 1234)
    ends = [w.first_frame + w.speech_mask.size for w in windows]
    n = frame_count(len(y), S)
    assert ends == list(range(step, n + 1, step)) + ([n] if n % step else [])
    # windows grow from the start until they are full, then slide
    assert [w.first_frame for w in windows] == [max(0, e - length) for e in ends]
    assert all(w.speech_mask.size == min(e, length) for w, e in zip(windows, ends, strict=True))


def test_stream_windows_equal_file_windows_where_they_coincide():
    y = conversation()
    stream = push_in_blocks(FrameCursor(S, grow=True), y, 800)
    files = window_inputs(y, S)
    both = {w.first_frame for w in files} & {w.first_frame for w in stream if w.speech_mask.size == S.window_frames}
    assert len(both) >= 6
    assert_same_windows([w for w in stream if w.first_frame in both and w.speech_mask.size == S.window_frames],
                        [w for w in files if w.first_frame in both])


def test_long_input_in_bounded_memory():
    """The cursor keeps only the frames a future window can reach: 4 min cost what 30 s do."""
    block = voice(180, 1.0, noise=0.002)
    window_inputs(block, S)  # build the cached filter banks before measuring

    def peak_bytes(seconds: int) -> int:
        cursor = FrameCursor(S)
        tracemalloc.start()
        windows = 0
        for _ in range(seconds):
            windows += len(cursor.push(block))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert windows == seconds - 3  # ends every second from 3 s; the last one waits for finish()
        return peak

    short, long = peak_bytes(30), peak_bytes(240)
    # Keeping every frame instead costs 0.13 MB a minute on top of ~2 MB of per-block work.
    assert long < 1.1 * short + 100_000, (short, long)


def test_a_block_is_not_kept_by_the_cursor():
    """The samples held back for the next block are a copy of their own (the block can be freed)."""
    y = voice(180, 12.0, noise=0.002)
    cursor = FrameCursor(S)
    blocks = [y[:4321], y[4321:100_000], y[100_000:]]
    for block in blocks:
        cursor.push(block)
        assert 0 < cursor._pending.size < S.frame_length
        assert not any(np.shares_memory(cursor._pending, b) for b in blocks)
    assert cursor.frames == frame_count(len(y), S)


# -- window input ---------------------------------------------------------------------------------------

def test_window_input_is_the_documented_composition():
    y = voice(170, 3.0, noise=0.005)
    stats = analyse_frames(y, S)
    window = window_input(stats, S)
    mask = speech_mask(stats, S)
    np.testing.assert_array_equal(window.speech_mask, mask)
    assert window.speech_seconds == pytest.approx(mask.sum() * S.hop_length / SR)
    cepstra = stats.cepstra[mask]
    np.testing.assert_allclose(window.features[:, : S.n_mfcc], cepstra - cepstra.mean(axis=0), atol=1e-4)
    # the pitch columns are not normalised: absolute pitch is a sex cue
    np.testing.assert_array_equal(window.features[:, S.n_mfcc :], pitch_columns(stats, S.vad_voicing)[mask])


def test_normalize_window_centres_the_cepstra_only(rng):
    features = rng.normal(3.0, 2.0, (80, S.n_features)).astype(np.float32)
    out = normalize_window(features, S)
    np.testing.assert_allclose(out[:, : S.n_mfcc].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_array_equal(out[:, S.n_mfcc :], features[:, S.n_mfcc :])
    assert out is not features and features.mean() > 2  # the input is left alone
    cmvn = normalize_window(features, S.with_changes(feature_norm="cmvn"))
    np.testing.assert_allclose(cmvn[:, : S.n_mfcc].std(axis=0), 1, atol=1e-3)


def test_without_normalisation_the_speech_is_levelled():
    # Speech detection off: the same frames at both levels (its -55 dBFS floor is absolute).
    settings = S.with_changes(feature_norm="none", rms_normalize=True, vad=False)
    y = voice(170, 3.0, noise=0.002)  # breath noise in every band, far above the log floor
    loud, quiet = window_inputs(y, settings)[0], window_inputs(y * np.float32(0.2), settings)[0]
    # The cepstra; pitch is measured only above the speech floor, so the quiet gaps lose theirs.
    np.testing.assert_allclose(loud.features[:, : S.n_mfcc], quiet.features[:, : S.n_mfcc], atol=2e-3)
    raw = settings.with_changes(rms_normalize=False)
    c0_loud = window_inputs(y, raw)[0].features[:, 0]
    c0_quiet = window_inputs(y * np.float32(0.2), raw)[0].features[:, 0]
    # 14 dB less on each of 64 mel bands is 14 * sqrt(64) = 112 less on the orthonormal DCT's c0
    np.testing.assert_allclose(c0_loud - c0_quiet, 20 * np.log10(5) * 8, atol=0.01)


def test_all_zero_audio_has_no_speech_windows():
    windows = window_inputs(np.zeros(10 * SR, np.float32), S)
    assert windows and all(w.features is None and w.speech_seconds == 0 for w in windows)


def test_silence_around_speech():
    y = np.concatenate([np.zeros(4 * SR), voice(200, 3.0), np.zeros(4 * SR)]).astype(np.float32)
    windows = window_inputs(y, S.with_changes(window_hop_seconds=3.0))
    assert windows[0].features is None and windows[-1].features is None
    with_speech = [w for w in windows if w.features is not None]
    assert with_speech and all(1.0 < w.end and w.start < 7.0 for w in with_speech)


def test_original_recipe_gates_the_noise_and_keeps_every_frame(rng):
    y = voice(170, 9.0) + 0.02 * rng.standard_normal(9 * SR).astype(np.float32)
    windows = window_inputs(y, ORIGINAL_SETTINGS)
    assert all(w.speech_mask.all() for w in windows)  # no speech detection
    assert all(w.features.shape == (94, 13) and np.isfinite(w.features).all() for w in windows)
    from edge.clean import spectral_gate

    gated = window_inputs(spectral_gate(y, SR), ORIGINAL_SETTINGS.with_changes(noise_reduction=False))
    assert_same_windows(windows, gated)


def test_features_are_finite_on_odd_inputs():
    for y in (np.full(SR, 0.5), np.sign(voice(200, 2.0)) * 0.9, np.clip(voice(200, 2.0) * 50, -1, 1)):
        for w in window_inputs(y.astype(np.float32), S):
            assert w.features is None or np.isfinite(w.features).all()


# -- speech seconds, aggregation, decision ------------------------------------------------------------

def window_with_mask(first_frame: int, mask: list[bool]) -> WindowInput:
    mask_array = np.array(mask, dtype=bool)
    return WindowInput(first_frame, 0.0, 0.0, float(mask_array.sum()) * S.frame_seconds, None, mask_array)


def test_speech_union_counts_overlapping_speech_once():
    union = SpeechUnion(S)
    union.add(window_with_mask(0, [False] * 4 + [True] * 6))         # frames 4-9
    union.add(window_with_mask(5, [True] * 7 + [False] * 3))          # frames 5-11
    union.add(window_with_mask(20, [True, True, False, True]))        # frames 20, 21, 23 (after a gap)
    assert union.seconds() == pytest.approx(11 * S.frame_seconds)  # the sum of the windows would be 16


def test_speech_union_over_real_windows_equals_the_union_of_their_masks():
    y = voice(190, 10.0, noise=0.002)
    windows = window_inputs(y, S)
    union = SpeechUnion(S)
    heard = np.zeros(frame_count(len(y), S), dtype=bool)
    for w in windows:
        union.add(w)
        heard[w.first_frame : w.first_frame + w.speech_mask.size] |= w.speech_mask
    assert union.seconds() == pytest.approx(heard.sum() * S.frame_seconds)
    assert union.seconds() < sum(w.speech_seconds for w in windows) / 2  # windows overlap 3x


def test_aggregate_weights_by_speech():
    assert aggregate(np.array([0.9, 0.1]), np.array([3.0, 1.0])) == pytest.approx(0.7)
    assert aggregate(np.array([0.2, 0.6]), np.array([0.0, 0.0])) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        aggregate(np.array([]), np.array([]))


def test_decide():
    assert decide(None, 0.5) == ("no_speech", None)
    assert decide(0.7, 0.5) == ("female", 0.7)
    assert decide(0.3, 0.5) == pytest.approx(("male", 0.7))
    assert decide(0.4, 0.4)[0] == "female"


def test_frame_stats_join_and_rows():
    stats = analyse_frames(voice(200, 1.0), S)
    parts = [stats.rows(0, 10), stats.rows(10, 10), stats.rows(10, len(stats))]
    joined = FrameStats.join(parts)
    np.testing.assert_array_equal(joined.cepstra, stats.cepstra)
    assert joined.start == 0 and len(joined) == len(stats)
