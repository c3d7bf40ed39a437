"""The feedback store: safe concurrent appends, a folder that is a training corpus, the retraining trigger."""

from __future__ import annotations

import csv
import json
import multiprocessing
import shlex
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.serve.feedback import (
    CSV_FIELDS,
    DuplicateFeedbackError,
    FeedbackStore,
    InvalidFeedbackError,
    RecentPrediction,
    RecentPredictions,
    Retrainer,
    RetrainOptions,
    UnknownPredictionError,
    safe_suffix,
)


@pytest.fixture
def clip(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)
    return path


def _add(store: FeedbackStore, clip: Path, predicted: str = "male", correct: str = "female",
         prediction_id: str | None = None):
    return store.add(clip, prediction_id=uuid.uuid4().hex if prediction_id is None else prediction_id, predicted_label=predicted,
                     p_female=0.25, correct_label=correct, model="test")


def _csv_rows(store: FeedbackStore) -> list[list[str]]:
    with open(store.csv_path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_add_stores_audio_under_label_folder_and_one_row(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    record = _add(store, clip, prediction_id="abc123")
    stored = store.root / "female" / "abc123.wav"
    assert record.file == "female/abc123.wav"
    assert stored.read_bytes() == clip.read_bytes()
    rows = _csv_rows(store)
    assert rows[0] == list(CSV_FIELDS)
    assert rows[1][1:] == ["abc123", "female/abc123.wav", "male", "0.250000", "female", "test"]
    assert record.is_correction
    assert [r.prediction_id for r in store.records()] == ["abc123"]
    # No temporary files are left next to the audio (the training loader walks these folders).
    assert sorted(p.name for p in (store.root / "female").iterdir()) == ["abc123.wav"]


def test_header_is_written_once(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    for _ in range(3):
        _add(store, clip)
    again = FeedbackStore(tmp_path / "fb")  # a restarted server appends to the same file
    _add(again, clip, predicted="female", correct="female")
    rows = _csv_rows(again)
    assert [row[0] for row in rows].count("timestamp") == 1
    assert len(rows) == 5
    assert [r.is_correction for r in again.records()] == [True, True, True, False]


def test_feedback_folder_is_a_training_corpus(tmp_path: Path, clip: Path):
    load_folder = pytest.importorskip("train.data").load_folder
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, correct="female", prediction_id="f1")
    _add(store, clip, predicted="female", correct="male", prediction_id="m1")
    recordings = load_folder(store.root)
    assert sorted((r.path.name, r.label) for r in recordings) == [("f1.wav", "female"), ("m1.wav", "male")]


@pytest.mark.parametrize("label", ["", "no_speech", "Woman", "../male"])
def test_bad_label_is_refused_and_nothing_is_written(tmp_path: Path, clip: Path, label: str):
    store = FeedbackStore(tmp_path / "fb")
    with pytest.raises(InvalidFeedbackError, match="correct_label"):
        _add(store, clip, correct=label)
    assert not store.csv_path.exists()
    assert store.records() == []


@pytest.mark.parametrize("prediction_id", ["../../etc/passwd", "a/b", "", "x" * 65, "id with space"])
def test_unsafe_prediction_id_is_refused(tmp_path: Path, clip: Path, prediction_id: str):
    store = FeedbackStore(tmp_path / "fb")
    with pytest.raises(InvalidFeedbackError, match="prediction_id"):
        _add(store, clip, prediction_id=prediction_id)
    assert list(store.root.rglob("*.wav")) == []


def test_second_correction_of_same_prediction_is_refused(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, correct="female", prediction_id="same")
    with pytest.raises(DuplicateFeedbackError):
        _add(store, clip, correct="male", prediction_id="same")
    assert len(store.records()) == 1
    assert not (store.root / "male").exists() or list((store.root / "male").iterdir()) == []


def test_missing_audio_is_refused(tmp_path: Path):
    store = FeedbackStore(tmp_path / "fb")
    with pytest.raises(UnknownPredictionError):
        _add(store, tmp_path / "gone.wav")
    assert store.records() == []


def test_cut_last_row_is_skipped_and_next_append_starts_a_new_line(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, prediction_id="first")
    with open(store.csv_path, "a", encoding="utf-8") as handle:  # a crash in the middle of a write
        handle.write("2026-01-01T00:00:00Z,half")
    _add(store, clip, prediction_id="second")
    assert [r.prediction_id for r in store.records()] == ["first", "second"]


def test_concurrent_appends_from_threads(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for j in range(25):
                label = "female" if (index + j) % 2 else "male"
                _add(store, clip, correct=label, prediction_id=f"t{index}-{j}")
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = _csv_rows(store)
    assert rows[0] == list(CSV_FIELDS)
    assert len(rows) == 1 + 200
    assert all(len(row) == len(CSV_FIELDS) for row in rows)
    ids = {row[1] for row in rows[1:]}
    assert ids == {f"t{i}-{j}" for i in range(8) for j in range(25)}
    for record in store.records():
        assert (store.root / record.file).read_bytes() == clip.read_bytes()


def _process_worker(root: str, clip: str, index: int) -> None:
    store = FeedbackStore(root)
    for j in range(20):
        store.add(clip, prediction_id=f"p{index}-{j}", predicted_label="male", p_female=0.1,
                  correct_label="female", model="test")


def test_concurrent_appends_from_processes(tmp_path: Path, clip: Path):
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_process_worker, args=(str(tmp_path / "fb"), str(clip), i))
                 for i in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    rows = _csv_rows(FeedbackStore(tmp_path / "fb"))
    assert [row[0] for row in rows].count("timestamp") == 1
    assert sorted(row[1] for row in rows[1:]) == sorted(f"p{i}-{j}" for i in range(4) for j in range(20))


def test_safe_suffix():
    assert safe_suffix("Recording.M4A") == ".m4a"
    assert safe_suffix("noext") == ".bin"
    assert safe_suffix("x.../../etc") == ".bin"
    assert safe_suffix(None, ".webm") == ".webm"


# --- recent predictions --------------------------------------------------------------------------------

def _recent_item(recent: RecentPredictions, prediction_id: str) -> RecentPrediction:
    path = recent.new_path(".wav")
    path.write_bytes(b"RIFF")
    return RecentPrediction(prediction_id, path, ".wav", "male", 0.2, "test")


def test_recent_predictions_are_bounded_and_files_removed(tmp_path: Path):
    recent = RecentPredictions(tmp_path / "recent", max_items=3)
    items = [_recent_item(recent, f"id{i}") for i in range(5)]
    for item in items:
        recent.add(item)
    assert len(recent) == 3
    assert not items[0].audio.exists() and not items[1].audio.exists()
    assert all(item.audio.exists() for item in items[2:])
    with pytest.raises(UnknownPredictionError, match="expired"):
        recent.take("id0")
    assert recent.take("id4") is items[4]
    with pytest.raises(DuplicateFeedbackError):
        recent.take("id4")
    recent.close()
    assert not (tmp_path / "recent").exists()


def test_recent_predictions_expire_by_age(tmp_path: Path):
    recent = RecentPredictions(tmp_path / "recent", max_items=10, max_age_seconds=60)
    old = _recent_item(recent, "old")
    old.created -= 120  # recorded two minutes ago
    recent.add(old)
    recent.add(_recent_item(recent, "new"))
    assert len(recent) == 1
    assert not old.audio.exists()
    with pytest.raises(UnknownPredictionError):
        recent.take("old")


# --- retraining trigger --------------------------------------------------------------------------------

def _marker_command(marker_dir: Path, extra: str = "") -> str:
    """A stand-in for 'gvd train': writes one marker file per run (and optionally waits)."""
    code = ("import pathlib, sys, uuid; " + extra +
            "pathlib.Path(sys.argv[1], uuid.uuid4().hex).write_text(sys.argv[2])")
    return f"{{python}} -c {shlex.quote(code)} {shlex.quote(str(marker_dir))} {{out}}"


def _runs(marker_dir: Path) -> list[Path]:
    return sorted(marker_dir.iterdir())


def test_retrain_fires_exactly_once_at_threshold(tmp_path: Path, clip: Path):
    markers = tmp_path / "markers"
    markers.mkdir()
    store = FeedbackStore(tmp_path / "fb")
    retrainer = Retrainer(store, RetrainOptions(threshold=20, command=_marker_command(markers), nice=0))
    for _ in range(5):  # agreements are stored but are not corrections
        _add(store, clip, predicted="female", correct="female")
        assert not retrainer.maybe_start()
    for _ in range(19):
        _add(store, clip)
        assert not retrainer.maybe_start()
    state = retrainer.wait(30)
    assert state["corrections_pending"] == 19 and state["runs"] == 0
    assert _runs(markers) == []

    _add(store, clip)  # the 20th correction
    assert retrainer.maybe_start()
    state = retrainer.wait(60)
    assert state["status"] == "succeeded", state
    assert state["runs"] == 1 and state["last"]["returncode"] == 0
    assert state["rows_consumed"] == 25 and state["corrections_pending"] == 0
    runs = _runs(markers)
    assert len(runs) == 1
    out_dir = Path(runs[0].read_text())
    assert out_dir.parent == store.root and out_dir.name.startswith("retrain-")
    assert (out_dir / "retrain.log").exists()

    for _ in range(5):  # the counter restarted: 5 more corrections do not trigger again
        _add(store, clip)
        assert not retrainer.maybe_start()
    retrainer.wait(30)
    assert len(_runs(markers)) == 1
    on_disk = json.loads((store.root / "retrain_state.json").read_text())
    assert on_disk["runs"] == 1 and on_disk["status"] == "succeeded"


def test_retrain_never_runs_twice_at_once(tmp_path: Path, clip: Path):
    markers = tmp_path / "markers"
    markers.mkdir()
    release = tmp_path / "release"
    wait = (f"import time; p = pathlib.Path({str(release)!r}); "
            "[time.sleep(0.05) for _ in range(2000) if not p.exists()]; ")
    store = FeedbackStore(tmp_path / "fb")
    retrainer = Retrainer(store, RetrainOptions(threshold=2, command=_marker_command(markers, wait), nice=0))
    for _ in range(2):
        _add(store, clip)
    assert retrainer.maybe_start()
    # While the first run is busy, a second server process on the same folder must not start another.
    other = Retrainer(FeedbackStore(store.root), RetrainOptions(threshold=2, command=_marker_command(markers), nice=0))
    for _ in range(6):
        _add(store, clip)
        assert not retrainer.maybe_start()
        assert not other.maybe_start()
    assert retrainer.state()["status"] == "running"
    release.touch()
    state = retrainer.wait(60)
    assert state["status"] == "succeeded" and state["runs"] == 1
    assert len(_runs(markers)) == 1
    assert state["corrections_pending"] == 6  # the corrections that arrived meanwhile count for the next run
    assert retrainer.maybe_start()
    assert retrainer.wait(60)["runs"] == 2
    assert len(_runs(markers)) == 2


def test_failed_retrain_is_recorded(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    retrainer = Retrainer(store, RetrainOptions(threshold=1, command="{python} -c 'raise SystemExit(3)'", nice=0))
    _add(store, clip)
    assert retrainer.maybe_start()
    state = retrainer.wait(60)
    assert state["status"] == "failed" and state["last"]["returncode"] == 3


def test_command_that_cannot_start_is_recorded_once(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    options = RetrainOptions(threshold=2, command="true", cwd=str(tmp_path / "missing-folder"), nice=0)
    retrainer = Retrainer(store, options)
    for _ in range(2):
        _add(store, clip)
    assert not retrainer.maybe_start()
    state = retrainer.state()
    assert state["status"] == "failed" and "could not start" in state["last"]["note"]
    assert state["runs"] == 1 and state["corrections_pending"] == 0
    _add(store, clip)
    assert not retrainer.maybe_start()  # not retried on every later correction
    assert retrainer.state()["runs"] == 1


def test_stale_running_state_is_recovered(tmp_path: Path, clip: Path):
    """A server killed during a run leaves 'running' behind; the next server must not wait forever."""
    store = FeedbackStore(tmp_path / "fb")
    dead = multiprocessing.get_context("fork").Process(target=sys.exit)
    dead.start()
    dead.join()
    (store.root / "retrain_state.json").write_text(json.dumps(
        {"status": "running", "runs": 1, "rows_consumed": 0, "last": {"pid": dead.pid}}))
    markers = tmp_path / "markers"
    markers.mkdir()
    retrainer = Retrainer(store, RetrainOptions(threshold=1, command=_marker_command(markers), nice=0))
    assert retrainer.state()["status"] == "interrupted"
    _add(store, clip)
    assert retrainer.maybe_start()
    assert retrainer.wait(60)["runs"] == 2
    assert len(_runs(markers)) == 1


def test_default_command_uses_placeholders(tmp_path: Path):
    store = FeedbackStore(tmp_path / "fb dir")
    command = Retrainer(store)._command(store.root / "retrain-x", "x")
    assert "train --data" in command and "export --train-dir" in command
    assert shlex.quote(str(store.root)) in command  # paths with spaces are quoted
    assert "{" not in command


@pytest.mark.parametrize("threshold", [0, -1])
def test_threshold_must_be_positive(threshold: int):
    with pytest.raises(ValueError):
        RetrainOptions(threshold=threshold)
