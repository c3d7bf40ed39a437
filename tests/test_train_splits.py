"""Speaker-grouped splits and leave-one-corpus-out folds."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.data import Recording, loco_folds, speaker_split


def _corpus(name: str, speakers_per_label: int, files_per_speaker: int) -> list[Recording]:
    recs = []
    for label in ("female", "male"):
        for s in range(speakers_per_label):
            for f in range(files_per_speaker):
                recs.append(Recording(Path(f"/x/{name}/{label}{s}_{f}.wav"), label, f"{label}{s}", name,
                                      f"{name}{label}{s}{f}"))
    return recs


def _speakers(recs):
    return {r.group for r in recs}


def test_split_is_speaker_disjoint_and_covers_everything():
    recs = _corpus("a", 20, 3) + _corpus("b", 10, 5)
    split = speaker_split(recs, (0.8, 0.1, 0.1), seed=3)
    train, val, test = (_speakers(split[s]) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert sum(len(v) for v in split.values()) == len(recs)
    # Every side sees both genders of every corpus.
    for side in ("train", "val", "test"):
        every_pair = {("a", "female"), ("a", "male"), ("b", "female"), ("b", "male")}
        assert {(r.corpus, r.label) for r in split[side]} == every_pair
    assert len(train) == 2 * 16 + 2 * 8


def test_split_is_deterministic_per_seed():
    recs = _corpus("a", 20, 2)
    first = speaker_split(recs, seed=7)
    again = speaker_split(list(reversed(recs)), seed=7)
    other = speaker_split(recs, seed=8)
    assert _speakers(first["test"]) == _speakers(again["test"])
    assert _speakers(first["test"]) != _speakers(other["test"])


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum"):
        speaker_split(_corpus("a", 3, 1), (0.5, 0.1, 0.1))


def test_loco_holds_out_each_corpus_entirely():
    recs = _corpus("a", 10, 2) + _corpus("b", 10, 2) + _corpus("c", 5, 2)
    folds = loco_folds(recs, val_fraction=0.1, seed=0)
    assert [f["held_out"] for f in folds] == ["a", "b", "c"]
    for fold in folds:
        assert {r.corpus for r in fold["test"]} == {fold["held_out"]}
        assert fold["held_out"] not in {r.corpus for r in fold["train"] + fold["val"]}
        assert not _speakers(fold["train"]) & _speakers(fold["val"])
        assert len(fold["test"]) == sum(r.corpus == fold["held_out"] for r in recs)


def test_loco_needs_two_corpora():
    with pytest.raises(ValueError, match="two corpora"):
        loco_folds(_corpus("a", 4, 1))


def _nonspeech(corpus: str, stems: list[str]) -> list[Recording]:
    from train.nonspeech import source_of

    return [Recording(Path(f"/x/{corpus}/{stem}.flac"), "nonspeech", source_of(stem), corpus) for stem in stems]


def test_loco_holds_out_each_nonspeech_source_once_with_its_pieces():
    shared = _nonspeech("nonspeech", [f"song_{k}" for k in range(4)] + ["hens", "tap", "friction0", "friction1"])
    other = _nonspeech("nonspeech_synthetic", ["melody_0", "melody_1"])
    recs = _corpus("a", 10, 2) + _corpus("b", 10, 2) + _corpus("c", 5, 2) + shared + other
    folds = loco_folds(recs, val_fraction=0.1, seed=0, heldout_nonspeech=("nonspeech",))
    held = [r for fold in folds for r in fold["nonspeech_test"]]
    assert sorted(r.path.name for r in held) == sorted(r.path.name for r in shared)  # each exactly once
    for fold in folds:
        sources = {r.group for r in fold["nonspeech_test"]}
        seen = fold["train"] + fold["val"]
        assert not sources & {r.group for r in seen}  # no piece of a held-out source is trained on
        assert all(r in seen for r in other)  # other non-speech always trains
    song = next(f for f in folds if any(r.speaker == "song" for r in f["nonspeech_test"]))
    assert sum(r.speaker == "song" for r in song["nonspeech_test"]) == 4
    assert {f["held_out"] for f in folds} == {"a", "b", "c"}  # non-speech never becomes a fold of its own


def test_loco_clip_scores_are_written_one_row_per_clip(tmp_path):
    """--loco keeps every held-out clip's score (the tables alone cannot answer calibration questions)."""
    import csv

    import numpy as np

    from train.data import Recording
    from train.evaluate import ClipScores
    from train.train import FoldResult, write_loco_clips

    recs = [Recording(Path(f"/d/{c}/{i}.flac"), label, f"s{i}", c)
            for i, (c, label) in enumerate([("urdu", "male"), ("urdu", "female"), ("tess", "female"),
                                            ("nonspeech_shared", "nonspeech")])]
    urdu = ClipScores(recs[:2], np.array([0.7, np.nan]), np.array([0, 1]), None,
                      [np.array([0.9, 0.2]), np.array([0.1])], [np.array([0.7, 0.4]), np.array([0.8])],
                      [np.array([2.5, 1.0]), np.array([0.6])], np.array([212.34, np.nan]))
    tess = ClipScores(recs[2:3], np.array([0.9]), np.array([1]))
    music = ClipScores(recs[3:], np.array([np.nan]), np.array([-1]), None, [np.array([0.3, 0.6, 0.1])],
                       [np.array([0.2, 0.5, 0.9])], [np.array([1.0, 3.0, 0.5])])
    write_loco_clips(tmp_path / "loco_clips.csv", {"default": {"lstm": {
        "urdu": FoldResult({}, urdu, None, music), "tess": FoldResult({}, tess, None)}}})  # type: ignore[arg-type]
    rows = list(csv.DictReader((tmp_path / "loco_clips.csv").open()))
    assert [(r["held_out"], r["corpus"], r["label"], r["p_female"]) for r in rows] == [
        ("urdu", "urdu", "male", "0.700000"), ("urdu", "urdu", "female", ""),
        ("urdu", "nonspeech_shared", "nonspeech", ""),  # the non-speech source held out with urdu
        ("tess", "tess", "female", "0.900000")]
    assert {r["cell"] for r in rows} == {"lstm"} and rows[0]["speaker"] == "s0"
    # Each judged window's p_speech, p_female and speech seconds, in time order; none recorded for tess
    assert [r["p_speech_windows"] for r in rows] == ["0.9000;0.2000", "0.1000", "0.3000;0.6000;0.1000", ""]
    assert [r["p_female_windows"] for r in rows] == ["0.700000;0.400000", "0.800000", "0.200000;0.500000;0.900000", ""]
    assert [r["speech_seconds_windows"] for r in rows] == ["2.50;1.00", "0.60", "1.00;3.00;0.50", ""]
    assert [r["median_f0"] for r in rows] == ["212.3", "", "", ""]  # no pitch measured: empty


def _windows_with_pitch(per_recording: dict[int, list[tuple[float, float]]], settings):
    """Clean windows whose frames carry the given (F0 Hz, voicing) in the pitch columns."""
    import numpy as np

    from train.dataset import Windows

    windows = Windows()
    for rec, frames in per_recording.items():
        features = np.zeros((len(frames), settings.n_features), np.float32)
        features[:, settings.n_mfcc] = [np.log2(f0 / 150.0) if f0 else 0.0 for f0, _ in frames]
        features[:, settings.n_mfcc + 1] = [v for _, v in frames]
        windows.features.append(features)
        windows.speech.append(1.0)
        windows.recording.append(rec)
        windows.variant.append(0)
        windows.features.append(features + 5.0)  # an augmented copy: never read
        windows.speech.append(1.0)
        windows.recording.append(rec)
        windows.variant.append(1)
    return windows


def test_clip_median_f0_reads_the_voiced_frames_of_clean_windows():
    import numpy as np

    from edge.settings import DEFAULT_SETTINGS
    from train.evaluate import clip_median_f0

    windows = _windows_with_pitch({0: [(100.0, 0.9), (120.0, 0.8), (300.0, 0.2), (0.0, 0.0)],
                                   1: [(0.0, 0.1)], 2: [(210.0, 0.95)]}, DEFAULT_SETTINGS)
    got = clip_median_f0(windows, [2, 0, 1, 3], DEFAULT_SETTINGS)
    np.testing.assert_allclose(got[:2], [210.0, np.sqrt(100.0 * 120.0)], rtol=1e-4)  # median of log F0
    assert np.isnan(got[2]) and np.isnan(got[3])  # nothing voiced; no windows at all
    assert np.isnan(clip_median_f0(windows, [0], DEFAULT_SETTINGS.with_changes(pitch=False))).all()


def test_pitch_overlap_counts_low_women_and_high_men_in_the_loco_table():
    import numpy as np

    from train.evaluate import ClipScores, pitch_overlap
    from train.reports import loco_table

    recs = [Recording(Path(f"/d/c/{i}.flac"), label, f"s{i}", "c") for i, label in
            enumerate(["female", "female", "female", "male", "male", "male", "male"])]
    scores = ClipScores(recs, np.array([0.8, 0.3, 0.9, 0.7, 0.2, 0.1, np.nan]), np.array([1, 1, 1, 0, 0, 0, 0]),
                        median_f0=np.array([170.0, 180.0, 230.0, 250.0, 190.0, 120.0, 260.0]))
    overlap = pitch_overlap(scores)
    # Women under 185 Hz: one right of two; men over 180 Hz: one right of two (the unanswered one is out)
    assert overlap == {"female_low": [1, 2], "male_high": [1, 2]}
    assert pitch_overlap(ClipScores(recs, scores.p_female, scores.y)) == {}
    text, table = loco_table({"default": {"lstm": {
        "a": {"balanced_accuracy": 0.9, "pitch_overlap": overlap},
        "b": {"balanced_accuracy": 0.8, "pitch_overlap": {"female_low": [3, 3], "male_high": [0, 1]}}}}})
    assert table["default"]["lstm"]["pitch_overlap"] == {"female_low": [4, 5], "male_high": [1, 3]}
    assert "women under 185 Hz 80.0 % right (4 of 5); men over 180 Hz 33.3 % right (1 of 3)" in text


def test_speech_threshold_is_the_highest_that_keeps_held_out_speech_within_budget():
    import numpy as np

    from train.evaluate import SPEECH_LOSS_BUDGET, SPEECH_THRESHOLD_GRID, choose_speech_threshold

    assert SPEECH_THRESHOLD_GRID[0] == 0.5 and SPEECH_LOSS_BUDGET == 0.005
    # 400 held-out clips: two may go (0.5 %). A clip is lost once fewer than half its windows reach the threshold.
    doubtful = [np.array([0.71]), np.array([0.74, 0.3, 0.9]), np.array([0.86, 0.88]), np.array([0.62, 0.95])]
    music = [np.array([0.6, 0.2]), np.array([0.8]), np.array([0.3])]
    choice = choose_speech_threshold([np.array([0.99, 0.98])] * 396 + doubtful, music)
    assert (choice.threshold, choice.speech_lost, choice.nonspeech_rejected) == (0.85, 2, 3)  # 0.9 loses 3
    choice = choose_speech_threshold([np.array([0.99])] * 398 + doubtful[2:], music)
    assert (choice.threshold, choice.speech_lost) == (0.95, 1)  # the top of the grid
    assert (choice.speech_clips, choice.nonspeech_clips, choice.nonspeech_rejected) == (400, 3, 3)
    # Clips with no judged window are lost at every threshold: past the budget, the shared default stays
    choice = choose_speech_threshold([np.array([0.99])] * 400 + [np.zeros(0)] * 10, music)
    assert (choice.threshold, choice.speech_lost, choice.nonspeech_rejected) == (0.5, 10, 1)


def test_merged_loco_clips_set_each_cells_speech_threshold(tmp_path):
    """python -m train.loco_merge chooses each speech-output cell's threshold from the LOCO run's clips."""
    import json

    import numpy as np

    from train.data import Recording
    from train.evaluate import ClipScores
    from train.loco_merge import merge
    from train.train import FoldResult, read_loco_windows, write_loco_clips

    recs = [Recording(Path(f"/d/urdu/{i}.flac"), "male", f"s{i}", "urdu") for i in range(200)]
    music = Recording(Path("/d/ns/m.flac"), "nonspeech", "m", "nonspeech_shared")
    p_speech = [np.array([0.97])] * 199 + [np.array([0.72])]  # one doubtful clip in 200 may go
    scores = ClipScores(recs, np.full(200, 0.2), np.zeros(200), None, p_speech, p_speech,
                        [np.array([2.0])] * 200)
    noise = ClipScores([music], np.array([0.4]), np.array([-1]), None, [np.array([0.8])], [np.array([0.4])],
                       [np.array([2.0])])
    loco_run = tmp_path / "loco"
    write_loco_clips(loco_run / "loco_clips.csv", {"default": {"rnn": {"urdu": FoldResult({}, scores, None, noise)}}})
    speech, nonspeech = read_loco_windows(loco_run / "loco_clips.csv")["rnn"]
    assert len(speech) == 200 and [w.tolist() for w in nonspeech] == [[0.8]]
    (loco_run / "run_summary.json").write_text(json.dumps({"preset": "default", "manifest_sha256": "ab",
                                                           "cells": {"rnn": {"loco": {"urdu": {"n_clips": 200}}}}}))
    final = tmp_path / "final"
    (final / "rnn").mkdir(parents=True)
    (final / "rnn" / "training.json").write_text(json.dumps({
        "cell": "rnn", "outputs": ["p_female", "p_speech"], "preset": "default", "data_manifest_sha256": "ab",
        "speech_threshold": 0.5, "metrics": {}}))
    assert merge(final, [loco_run]) == ["rnn"]
    record = json.loads((final / "rnn" / "training.json").read_text())
    assert record["speech_threshold"] == 0.95  # the 0.72 clip is within 0.5 % of 200
    assert record["metrics"]["speech_threshold"] | {"budget": None} == {
        "threshold": 0.95, "speech_clips": 200, "speech_lost": 1, "nonspeech_clips": 1, "nonspeech_rejected": 1,
        "budget": None}


def test_a_run_with_loco_and_final_models_chooses_from_every_fold_and_its_held_out_sounds():
    import numpy as np

    from train.config import preset
    from train.data import Recording
    from train.evaluate import ClipScores
    from train.train import FoldResult, _speech_threshold_text, speech_threshold_choice, speech_threshold_choices

    def scores(corpus: str, label: str, p_speech: list[list[float]]) -> ClipScores:
        recs = [Recording(Path(f"/d/{corpus}/{i}.flac"), label, f"s{i}", corpus) for i in range(len(p_speech))]
        windows = [np.array(p) for p in p_speech]
        return ClipScores(recs, np.full(len(recs), 0.5), np.zeros(len(recs)), None, windows, windows, windows)

    folds = {"urdu": FoldResult({}, scores("urdu", "male", [[0.99]] * 250), None,  # type: ignore[arg-type]
                                scores("ns", "nonspeech", [[0.7], [0.2]])),
             "tess": FoldResult({}, scores("tess", "female", [[0.99]] * 148 + [[0.66], [0.81]]), None)}  # type: ignore[arg-type]
    choice = speech_threshold_choice(folds)
    # 400 clips over both folds, so two may go: the two doubtful ones are, at the top of the grid
    assert (choice.threshold, choice.speech_clips, choice.speech_lost) == (0.95, 400, 2)
    assert (choice.nonspeech_clips, choice.nonspeech_rejected) == (2, 2)
    # The LOCO report says it, for cells with a speech output only
    assert speech_threshold_choices({"gru": folds}, preset("default")) == {"gru": choice}
    text = _speech_threshold_text(speech_threshold_choices({"gru": folds}, preset("default")))
    assert "- gru: 0.95; at it 2 of 400 held-out speech clips and 2 of 2 held-out non-speech clips" in text
    assert "at most 0.5% of the held-out speech clips" in text
    assert _speech_threshold_text(speech_threshold_choices({"gru": folds}, preset("original"))) == ""  # no output
