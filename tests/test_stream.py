"""StreamingDetector: any chunk size and rate, events on change, silence never gets a gender."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from edge import Detector
from edge.audio import load_audio
from edge.errors import InvalidSamplesError
from edge.stream import StreamEvent, StreamingDetector

from model_fixtures import SHIPPED_MANIFEST, shipped_models, voice

RATE = 16000
FRAME_SECONDS = 512 / RATE  # a window ends with its last frame, on the 20 ms grid


def feed_in_chunks(stream: StreamingDetector, y: np.ndarray, rate: int, size: int) -> list[StreamEvent]:
    events = []
    for start in range(0, len(y), size):
        events += stream.feed(y[start : start + size], rate)
    return events + stream.flush()


def conversation(rate: int = RATE) -> np.ndarray:
    gap = np.zeros(int(1.5 * rate), np.float32)
    return np.concatenate([gap, voice(220, 6.0, rate, seed=1), gap, gap, voice(110, 6.0, rate, seed=2), gap])


def test_chunk_size_does_not_change_the_events(fake_detector):
    y = conversation()
    reference = feed_in_chunks(fake_detector.stream(), y, RATE, RATE)
    for size in (37, 800, 12345, len(y)):
        events = feed_in_chunks(fake_detector.stream(), y, RATE, size)
        assert [(e.kind, e.time, e.label) for e in events] == [(e.kind, e.time, e.label) for e in reference]
        np.testing.assert_allclose([e.p_female or -1 for e in events], [e.p_female or -1 for e in reference], rtol=1e-6)


def test_decisions_follow_speech_and_silence(fake_detector):
    events = feed_in_chunks(fake_detector.stream(hop_seconds=0.5, update_seconds=1.0), conversation(), RATE, 1600)
    decisions = [e for e in events if e.kind == "decision"]
    assert decisions[0].label == "no_speech" and decisions[0].p_female is None
    # speech starts at 1.5 s and stops at 7.5 s; again 10.5 s to 16.5 s. A gender is given once a window
    # holds a second of speech (the stream's min_speech_seconds), within about 2 s of the onset.
    spoken = [e for e in decisions if e.label != "no_speech"]
    assert spoken and 2.5 <= spoken[0].time <= 3.5 + FRAME_SECONDS
    assert all(e.speech_seconds >= 1.0 for e in events if e.label != "no_speech")
    assert any(e.label == "no_speech" and 7.5 < e.time <= 11.0 for e in decisions)
    # each decision changes the label; updates keep it and come at least every second of audio
    labels = [e.label for e in decisions]
    assert all(a != b for a, b in pairwise(labels))
    times = [e.time for e in events]
    assert max(np.diff(times)) <= 1.0 + 1e-6
    for e in events:
        assert (e.p_female is None) == (e.label == "no_speech") == (not e.speech)


def test_silence_and_noise_never_get_a_gender(fake_detector, rng):
    stream = fake_detector.stream()
    noise = np.concatenate([np.zeros(3 * RATE), 0.2 * rng.standard_normal(5 * RATE)]).astype(np.float32)
    events = feed_in_chunks(stream, noise, RATE, 4000)
    assert events and {e.label for e in events} == {"no_speech"}


@pytest.mark.parametrize("f0", [100, 120])
def test_a_buzz_after_silence_never_gets_a_gender(fake_detector, f0):
    # A kiosk goes quiet, then a transformer or fan buzz starts: periodic at a speaking pitch, steady.
    t = np.arange(6 * RATE) / RATE
    buzz = 0.05 * sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 6))
    y = np.concatenate([np.zeros(2 * RATE), buzz]).astype(np.float32)
    events = feed_in_chunks(fake_detector.stream(), y, RATE, 1600)
    assert events and {e.label for e in events} == {"no_speech"}


def test_48k_input_is_resampled_like_a_16k_one(fake_detector):
    at_16k = feed_in_chunks(fake_detector.stream(), voice(200, 5.0, RATE), RATE, 1600)
    at_48k = feed_in_chunks(fake_detector.stream(), voice(200, 5.0, 48000), 48000, 4800)
    assert [(e.time, e.label) for e in at_48k] == [(e.time, e.label) for e in at_16k]
    assert at_48k[-1].p_female == pytest.approx(at_16k[-1].p_female, abs=0.05)


def test_stereo_int16_chunks_and_a_rate_change(fake_detector):
    stream = fake_detector.stream()
    y = (voice(200, 3.0, 44100) * 32767).astype(np.int16)
    events = stream.feed(np.stack([y, y], axis=1), 44100)
    events += stream.feed(voice(200, 3.0, 48000), 48000)
    assert stream.seconds == pytest.approx(6.0, abs=0.05)  # soxr holds back a few ms until flush
    assert events[-1].label != "no_speech"


def test_bad_chunks(fake_detector):
    stream = fake_detector.stream()
    assert stream.feed(np.zeros(0, np.float32), RATE) == []
    with pytest.raises(InvalidSamplesError):
        stream.feed(np.array([0.0, np.inf], np.float32), RATE)
    with pytest.raises(InvalidSamplesError):
        stream.feed(np.zeros(10, np.float32), 0)


def test_event_dict_and_reset(fake_detector):
    stream = fake_detector.stream()
    event = feed_in_chunks(stream, voice(200, 3.0), RATE, 8000)[-1]
    assert event.to_dict()["label"] == event.label
    stream.reset()
    assert stream.seconds == 0 and stream.last_event is None


def test_a_window_every_hop(fake_detector):
    stream = fake_detector.stream(hop_seconds=0.5)
    feed_in_chunks(stream, voice(200, 6.0), RATE, 777)
    # windows end every 0.5 s from 1 s (shorter ones are too short to judge), and one with the input
    assert stream.windows == 11


def test_reasons_silence_then_not_speech(rejecting_model):
    y = np.concatenate([np.zeros(3 * RATE, np.float32), voice(200, 5.0)])
    events = feed_in_chunks(Detector(rejecting_model).stream(), y, RATE, 1600)
    assert {e.label for e in events} == {"no_speech"}
    assert events[0].reason == "silence"
    assert any(e.reason == "not_speech" and e.speech_seconds >= 1.0 for e in events if e.time > 5.0)


def test_follows_a_change_of_speaker(pitch_detector):
    """A model that hears pitch: the label follows the woman, then the man, within 2.5 s."""
    y = conversation()
    events = feed_in_chunks(pitch_detector.stream(), y, RATE, 1600)
    spoken = [e for e in events if e.label != "no_speech"]
    assert spoken[0].label == "female" and spoken[-1].label == "male"
    switch = next(e.time for e in spoken if e.label == "male")
    assert 10.5 < switch <= 10.5 + 2.5  # the man starts at 10.5 s


def test_a_quiet_voice_with_a_dc_offset_is_heard_live(fake_detector):
    """The bundled male voice at a tenth of its level with a 1 % DC offset, as from a cheap microphone."""
    y, _ = load_audio(SHIPPED_MANIFEST.parent / "samples" / "male_16k.flac")
    events = feed_in_chunks(fake_detector.stream(), y * np.float32(0.1) + np.float32(0.01), RATE, 1600)
    assert any(e.speech and e.label != "no_speech" for e in events)


@shipped_models
def test_shipped_model_follows_a_change_of_speaker():
    y, _ = load_audio(SHIPPED_MANIFEST.parent / "samples" / "two_speakers.wav")
    events = feed_in_chunks(Detector().stream(), y, RATE, 1600)
    # The woman speaks first; the man starts after her and the pause (see models/samples/README.md).
    spoken = [e for e in events if e.label != "no_speech"]
    assert spoken[0].label == "female"
    assert spoken[-1].label == "male"
    switch = next(e.time for e in spoken if e.label == "male")
    man_starts = _man_starts(y)
    assert switch - man_starts <= 2.5, f"the label followed the new speaker after {switch - man_starts:.1f} s"


def _man_starts(y: np.ndarray) -> float:
    """End of the longest near-silent stretch: where the second speaker starts."""
    frame = 160
    energy = np.sqrt(np.mean(y[: len(y) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    quiet = energy < 1e-3
    best, run, best_end = 0, 0, 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run > best:
            best, best_end = run, i + 1
    return best_end * frame / RATE
