"""A few windows the speech output accepts among many it rejects do not make a clip (or a stream) speech."""

from __future__ import annotations

import numpy as np
import pytest

from edge import Detector
from edge.decision import (
    MIN_SPEECH_SHARE,
    SPEECH_THRESHOLD,
    STREAM_SHARE_SECONDS,
    RecentShare,
    accepted_as_speech,
    enough_speech,
)

from model_fixtures import make_pitch_model
from signals import voice

RATE = 16000


@pytest.fixture(scope="module")
def picky(tmp_path_factory) -> Detector:
    """p_female and p_speech both from pitch: a 220 Hz voice is accepted (and female), 110 Hz rejected."""
    return Detector(make_pitch_model(tmp_path_factory.mktemp("model") / "picky.onnx", speech_from_pitch=True))


def test_a_window_is_speech_from_the_threshold_on_and_without_a_speech_output():
    p_speech = np.array([0.0, SPEECH_THRESHOLD - 1e-6, SPEECH_THRESHOLD, 0.99, np.nan])
    assert accepted_as_speech(p_speech).tolist() == [False, False, True, True, True]


@pytest.mark.parametrize(("accepted", "judged", "speech"), [
    (0, 0, False), (0, 5, False), (1, 1, True), (1, 2, True), (1, 3, False), (2, 4, True), (2, 5, False),
    (3, 5, True), (99, 200, False), (100, 200, True),
])
def test_share_of_accepted_windows(accepted, judged, speech):
    assert MIN_SPEECH_SHARE == 0.5  # the table below is written for it
    assert enough_speech(accepted, judged) is speech


def test_recent_share_forgets_what_scrolled_out_and_what_came_before_silence():
    share = RecentShare(hop_seconds=STREAM_SHARE_SECONDS / 10)  # ten windows
    assert [share.add(False) for _ in range(10)] == [False] * 10
    assert [share.add(True) for _ in range(5)] == [False] * 4 + [True]  # 5 of the last 10
    share.clear()
    assert share.add(True) is True


def test_a_short_accepted_moment_in_a_long_rejected_sound_is_not_speech(picky):
    # 2 s the model accepts inside 28 s it rejects: one accepted window can make the clip's
    # gender (the first rule), but under half of the judged windows is not speech.
    y = np.concatenate([voice(110, 14.0, seed=1), voice(220, 2.0, seed=2), voice(110, 14.0, seed=3)])
    result = picky.predict(y, RATE)
    accepted = [s for s in result.segments if s.p_female is not None]
    judged = [s for s in result.segments if s.p_speech is not None]
    assert 1 <= len(accepted) < MIN_SPEECH_SHARE * len(judged)
    assert (result.label, result.reason, result.p_female) == ("no_speech", "not_speech", None)


def test_speech_that_is_half_of_the_judged_sound_keeps_its_answer(picky):
    y = np.concatenate([voice(110, 7.0, seed=1), voice(220, 9.0, seed=2)])
    result = picky.predict(y, RATE)
    assert result.label == "female"
    # only the accepted windows vote
    assert result.p_female == pytest.approx(np.average(
        [s.p_female for s in result.segments if s.p_female is not None],
        weights=[s.speech_seconds for s in result.segments if s.p_female is not None]))


def test_a_stream_ignores_an_accepted_moment_in_a_rejected_sound_and_follows_real_speech(picky):
    y = np.concatenate([voice(110, 12.0, seed=1), voice(220, 1.0, seed=2), voice(110, 7.0, seed=3),
                        voice(220, 8.0, seed=4)])
    events = []
    stream = picky.stream()
    for start in range(0, y.size, 1600):
        events += stream.feed(y[start : start + 1600], RATE)
    events += stream.flush()
    before = [e for e in events if e.time <= 19.5]
    assert {e.label for e in before} == {"no_speech"}
    assert any(e.reason == "not_speech" for e in before)
    # the high voice that goes on is speech once it fills a window and half of the last 5 s
    female = [e.time for e in events if e.label == "female"]
    assert female and 20.0 < female[0] <= 24.0


def test_a_window_reaches_a_threshold_of_its_own():
    p_speech = np.array([0.6, 0.64, 0.65, 0.9, np.nan])
    assert accepted_as_speech(p_speech, 0.65).tolist() == [False, False, True, True, True]


def test_clips_and_streams_follow_the_speech_threshold_the_model_carries(tmp_path):
    """The same network with a stricter speech threshold in its metadata rejects what the other accepts."""
    from dataclasses import replace

    from model_fixtures import test_metadata

    lenient = Detector(make_pitch_model(tmp_path / "lenient.onnx", speech_from_pitch=True))
    strict = Detector(make_pitch_model(tmp_path / "strict.onnx", replace(test_metadata(speech_output=True),
                                                                          speech_threshold=0.95),
                                       speech_from_pitch=True))
    assert (lenient.speech_threshold, strict.speech_threshold) == (SPEECH_THRESHOLD, 0.95)
    y = voice(180, 6.0, seed=5)
    heard = lenient.predict(y, RATE)
    p_speech = [s.p_speech for s in heard.segments if s.p_speech is not None]
    assert p_speech and all(SPEECH_THRESHOLD < p < 0.95 for p in p_speech)  # between the two thresholds
    assert heard.label == "female"
    rejected = strict.predict(y, RATE)
    assert (rejected.label, rejected.reason) == ("no_speech", "not_speech")
    for detector, labels in ((lenient, {"female"}), (strict, {"no_speech"})):
        stream = detector.stream()
        events = [e for start in range(0, y.size, 1600) for e in stream.feed(y[start : start + 1600], RATE)]
        events += stream.flush()
        assert {e.label for e in events if e.time >= 3.0} == labels
