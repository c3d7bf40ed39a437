"""The shipped models on sounds that are not speech, and on the bundled voices with music under them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import Detector
from edge.audio import load_audio
from edge.manifest import read_manifest

from model_fixtures import SHIPPED_MANIFEST, shipped_models

SHARED_NONSPEECH = Path(__file__).resolve().parents[2] / "shared" / "nonspeech"
needs_nonspeech = pytest.mark.skipif(not SHARED_NONSPEECH.is_dir(),
                                     reason=f"needs the shared non-speech clips at {SHARED_NONSPEECH}")
SAMPLES = SHIPPED_MANIFEST.parent / "samples"
VOICES = ["female_espeak_22k.flac", "male_16k.flac", "male_48k.flac"]
RATE = 16000


def _shipped_models() -> list[str]:
    if not SHIPPED_MANIFEST.is_file():
        return []
    return read_manifest(SHIPPED_MANIFEST).names


# Measured 2026-12-02 with the shipped models (which trained on these clips; held out by source in
# leave-one-corpus-out, lstm rejected 50 of 53), with the share rule of edge.decision (half of the
# judged windows) and each model's own speech threshold (lstm 0.5, gru and rnn 0.65): clips given no
# gender, of 53. The lstm (and its int8 copy) reject them all; the gru and rnn still give music on
# hold a gender now and then (rnn: 41 at the shared threshold 0.5). Their strict xfail turns red once
# they reject them all; the floor catches a model that rejects fewer.
REJECTED_AT_LEAST = {"lstm": 53, "lstm_int8": 53, "gru": 52, "rnn": 43}
# The rnn gives one of the five whole tracks a gender (it accepts 42 of its 78 judged windows; 61 at 0.5).
WHOLE_TRACKS_REJECTED = ("lstm", "lstm_int8", "gru")


def _genders_given(model: str) -> dict[str, str]:
    detector = Detector(model)
    given = {}
    for path in sorted(SHARED_NONSPEECH.glob("*.flac")):
        result = detector.predict(path)
        if result.label != "no_speech":
            given[path.name] = f"{result.label} {result.confidence:.2f}"
    return given


@shipped_models
@needs_nonspeech
@pytest.mark.shared
@pytest.mark.parametrize("model", _shipped_models())
def test_shared_nonspeech_rejection_holds_its_measured_level(model):
    given = _genders_given(model)
    rejected = len(list(SHARED_NONSPEECH.glob("*.flac"))) - len(given)
    assert rejected >= REJECTED_AT_LEAST.get(model, 53), f"{model} gave a gender to {len(given)}: {given}"


@shipped_models
@needs_nonspeech
@pytest.mark.shared
@pytest.mark.parametrize("model", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=f"{name} still gives some music on hold a gender"))
    if REJECTED_AT_LEAST.get(name, 53) < 53 else name
    for name in _shipped_models()])
def test_every_shared_nonspeech_clip_gets_no_gender(model):
    given = _genders_given(model)
    assert not given, f"{model} gave a gender to {len(given)} non-speech clips: {given}"


@shipped_models
@needs_nonspeech
@pytest.mark.shared
@pytest.mark.parametrize("model", WHOLE_TRACKS_REJECTED)
def test_a_whole_music_on_hold_track_gets_no_gender(model):
    """The 10 s pieces of one track joined again: a piece or two alone may get a gender, the track
    (40-80 s, a few false alarms among dozens of rejected windows) does not."""
    detector = Detector(model)
    pieces: dict[str, list[Path]] = {}
    for path in sorted(SHARED_NONSPEECH.glob("music_on_hold_*.flac")):
        pieces.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    assert len(pieces) == 5
    for track, paths in pieces.items():
        y = np.concatenate([load_audio(p, RATE)[0] for p in paths])
        result = detector.predict(y, RATE)
        assert (result.label, result.reason) == ("no_speech", "not_speech"), (track, result.p_female)


def _music_beds() -> list[tuple[str, np.ndarray]]:
    from train.nonspeech import synthetic_clip

    beds = [(kind, synthetic_clip(kind, 8 * RATE, np.random.default_rng(seed)).astype(np.float64))
            for seed, kind in enumerate(("band", "chords", "melody"))]
    if SHARED_NONSPEECH.is_dir():
        for name in ("music_on_hold_macroform-cold_day_1.flac", "music_on_hold_manolo_camp-morning_coffee_0.flac"):
            beds.append((name, load_audio(SHARED_NONSPEECH / name, RATE)[0].astype(np.float64)))
    return beds


@shipped_models
@pytest.mark.parametrize("voice", VOICES)
def test_bundled_voices_keep_their_label_with_music_10_db_below(voice):
    """Speech over music is speech: the label holds with music 10 dB below the voice (RMS over the clip)."""
    detector = Detector()
    speech = load_audio(SAMPLES / voice, RATE)[0].astype(np.float64)
    expected = voice.split("_")[0]
    assert detector.predict(speech.astype(np.float32), RATE).label == expected
    wrong = {}
    for name, bed in _music_beds():
        bed = np.resize(bed, speech.size)
        gain = np.sqrt(np.mean(speech**2) / np.mean(bed**2)) * 10 ** (-10 / 20)
        result = detector.predict((speech + gain * bed).astype(np.float32), RATE)
        if result.label != expected:
            wrong[name] = f"{result.label} ({result.reason or result.confidence})"
    assert not wrong, f"{voice} with music 10 dB below: {wrong}"
