"""The feedback store (SQLite, WAL) and the kept uploads: layout, one transaction per correction,
quotas, the start-up sweep, the legacy CSV import and O(1) bookkeeping."""

from __future__ import annotations

import csv
import sqlite3
import statistics
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.serve.errors import ApiError
from edge.serve.recent import RecentLimits, RecentPrediction, RecentPredictions
from edge.serve.store import DB_NAME, ClientRate, FeedbackStore, StoreLimits, read_recent
from edge.serve.uploads import safe_suffix


@pytest.fixture
def clip(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)
    return path


def _add(store: FeedbackStore, clip: Path, predicted: str = "male", correct: str = "female",
         prediction_id: str | None = None, client: str = "127.0.0.1"):
    prediction_id = uuid.uuid4().hex if prediction_id is None else prediction_id
    return store.add(clip, prediction_id=prediction_id, predicted_label=predicted,
                     p_female=0.25, correct_label=correct, model="test", client=client)


def _error(info) -> str:
    return info.value.error


def test_add_stores_audio_under_its_label_and_one_row(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    record = _add(store, clip, prediction_id="abc123")
    stored = store.root / "female" / "abc123.wav"
    assert record.file == "female/abc123.wav" and record.is_correction
    assert stored.read_bytes() == clip.read_bytes()
    assert [r.prediction_id for r in store.records()] == ["abc123"]
    assert store.totals().rows == 1 and store.totals().bytes == clip.stat().st_size and store.totals().pending == 1
    assert clip.exists()  # copied, not moved, unless asked to
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_agreement_is_stored_but_is_not_a_pending_correction(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, predicted="female", correct="female")
    assert store.totals().rows == 1 and store.totals().pending == 0


@pytest.mark.parametrize("label", ["robot", "", "Female", None])
def test_bad_label_is_refused_and_nothing_is_written(tmp_path: Path, clip: Path, label):
    store = FeedbackStore(tmp_path / "fb")
    with pytest.raises(ApiError) as info:
        _add(store, clip, correct=label)
    assert _error(info) == "invalid_label"
    assert store.records() == [] and not any((store.root / "female").iterdir())


@pytest.mark.parametrize("prediction_id", ["../x", "a/b", "", "x" * 65, "a b"])
def test_unsafe_prediction_id_is_refused(tmp_path: Path, clip: Path, prediction_id: str):
    store = FeedbackStore(tmp_path / "fb")
    with pytest.raises(ApiError) as info:
        _add(store, clip, prediction_id=prediction_id)
    assert _error(info) == "invalid_prediction_id"


def test_second_correction_of_a_prediction_is_refused(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, prediction_id="same")
    with pytest.raises(ApiError) as info:
        _add(store, clip, correct="male", prediction_id="same")
    assert _error(info) == "already_recorded"
    assert len(store.records()) == 1 and not (store.root / "male" / "same.wav").exists()


def test_move_renames_the_kept_upload_and_a_failed_insert_puts_it_back(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    kept = tmp_path / "kept.wav"
    kept.write_bytes(clip.read_bytes())
    store.add(kept, prediction_id="moved", predicted_label="male", p_female=0.1, correct_label="female",
              model="m", client="c", move=True)
    assert not kept.exists() and (store.root / "female" / "moved.wav").is_file()
    kept.write_bytes(clip.read_bytes())
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON corrections BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        store.add(kept, prediction_id="back", predicted_label="male", p_female=0.1, correct_label="female",
                  model="m", client="c", move=True)
    assert kept.is_file() and not (store.root / "female" / "back.wav").exists()  # no audio without its row
    assert store.totals().rows == 1


def test_concurrent_adds_from_threads(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(n):
                _add(store, clip)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(10,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.records()) == 80 == store.totals().rows
    assert len(list((store.root / "female").iterdir())) == 80


def test_byte_and_row_quotas(tmp_path: Path, clip: Path):
    """Finding 4 (disk can be filled): the store refuses with 507 before passing its quota."""
    size = clip.stat().st_size
    store = FeedbackStore(tmp_path / "fb", StoreLimits(max_bytes=3 * size + 10, max_rows=1000))
    for _ in range(3):
        _add(store, clip)
    with pytest.raises(ApiError) as info:
        _add(store, clip)
    assert info.value.status == 507 and _error(info) == "storage_full"
    assert store.totals().bytes <= 3 * size + 10 and len(list((store.root / "female").iterdir())) == 3
    rows_store = FeedbackStore(tmp_path / "fb2", StoreLimits(max_rows=2))
    _add(rows_store, clip), _add(rows_store, clip)
    with pytest.raises(ApiError) as info:
        _add(rows_store, clip)
    assert _error(info) == "storage_full" and "2 corrections" in info.value.message


def test_client_rate_is_per_client_and_sliding():
    """Finding 4: one client cannot post corrections without limit; others are not affected."""
    rate = ClientRate(per_minute=3)
    for t in (0.0, 1.0, 2.0):
        rate.check("a", now=t)
    with pytest.raises(ApiError) as info:
        rate.check("a", now=30.0)
    assert info.value.status == 429 and int(info.value.headers["Retry-After"]) >= 30
    rate.check("b", now=30.0)
    rate.check("a", now=61.0)  # the first event left the minute


def test_bookkeeping_per_correction_does_not_grow_with_the_store(tmp_path: Path, clip: Path):
    """Finding 6: the CSV store re-read the whole file per request (2.4 s per POST at 100k rows).

    Totals are a row kept up to date in each transaction; adding to a store of 100,000 rows costs
    the same as adding to an empty one."""
    store = FeedbackStore(tmp_path / "fb", StoreLimits(max_rows=1_000_000))

    def median_add_seconds(n: int = 15) -> float:
        times = []
        for _ in range(n):
            tick = time.perf_counter()
            _add(store, clip)
            store.totals()
            times.append(time.perf_counter() - tick)
        return statistics.median(times)

    empty = median_add_seconds()
    with store.transaction() as db:  # 100k rows written straight into the table (their audio is irrelevant here)
        db.executemany("INSERT INTO corrections VALUES (?, ?, 1, 'male', 0.2, 'female', 'm', 'c', 'now', NULL)",
                       ((f"bulk{i}", f"female/bulk{i}.wav") for i in range(100_000)))
        db.execute("UPDATE totals SET rows = rows + 100000, bytes = bytes + 100000, pending = pending + 100000")
    full = median_add_seconds()
    print(f"\nmedian add + totals: {empty * 1000:.1f} ms empty, {full * 1000:.1f} ms at 100k rows")
    assert store.totals().rows == 100_030
    assert full < max(5 * empty, 0.05)


def test_start_up_sweep_removes_orphans_partials_and_temp_files(tmp_path: Path, clip: Path):
    """Finding 7: after kill -9 there were audio files without a row and .partial files, never cleaned."""
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, prediction_id="kept")
    store.close()
    root = tmp_path / "fb"
    (root / "male" / "orphan.wav").write_bytes(clip.read_bytes())  # renamed in, row never committed
    (root / ".tmp").mkdir(exist_ok=True)
    (root / ".tmp" / "cut.wav.partial").write_bytes(b"RIFF")
    (root / "female" / ".old.wav.partial").write_bytes(b"RIFF")  # left by the CSV-era store
    (root / "female" / "gone.wav").write_bytes(b"x")
    store = FeedbackStore(root)
    assert (store.last_sweep.orphans, store.last_sweep.partials) == (2, 1)  # orphan.wav and gone.wav
    assert sorted(p.name for p in root.rglob("*") if p.is_file() and p.suffix in (".wav", ".partial")) == ["kept.wav"]
    assert not (root / ".tmp").exists()
    (root / "female" / "kept.wav").unlink()  # deleted by hand: the row goes too
    store.close()
    store = FeedbackStore(root)
    assert store.last_sweep.missing == 1 and store.records() == [] and store.totals().rows == 0


def test_legacy_csv_folder_is_imported_once(tmp_path: Path, clip: Path):
    root = tmp_path / "fb"
    (root / "female").mkdir(parents=True)
    (root / "female" / "old1.wav").write_bytes(clip.read_bytes())
    with open(root / "feedback.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "prediction_id", "file", "predicted_label", "p_female", "correct_label", "model"])
        writer.writerow(["2026-01-01T00:00:00Z", "old1", "female/old1.wav", "male", "0.2", "female", "gru"])
        writer.writerow(["2026-01-01T00:00:01Z", "old2", "male/old2.wav", "female", "0.9", "male", "gru"])  # no audio
        handle.write("2026-01-01T00:00:02Z,cut")  # a row cut short by a crash
    store = FeedbackStore(root)
    assert store.last_sweep.imported_csv_rows == 1
    assert [r.prediction_id for r in store.records()] == ["old1"] and store.totals().pending == 1
    assert (root / "feedback.csv.imported").is_file() and not (root / "feedback.csv").exists()


def test_read_recent_does_not_touch_the_folder(tmp_path: Path, clip: Path):
    store = FeedbackStore(tmp_path / "fb")
    _add(store, clip, prediction_id="one")
    (store.root / "male" / "in-flight.wav").write_bytes(b"x")  # another process's correction being committed
    recent = read_recent(store.root, 10)
    assert [c.prediction_id for _, c in recent] == ["one"] and recent[0][0] == store.root / "female" / "one.wav"
    assert (store.root / "male" / "in-flight.wav").exists()
    assert read_recent(tmp_path / "nothing", 10) == []
    assert (store.root / DB_NAME).is_file()


def test_safe_suffix():
    assert safe_suffix("voice.WAV") == ".wav"
    assert safe_suffix("../../etc/passwd") == ".bin"
    assert safe_suffix("x.a;rm") == ".bin"
    assert safe_suffix(None, ".ogg") == ".ogg"


def _item(folder: RecentPredictions, size: int = 10, **kw) -> RecentPrediction:
    path = folder.new_path(".wav")
    path.write_bytes(b"x" * size)
    return RecentPrediction(kw.get("pid", uuid.uuid4().hex), path, "male", 0.2, "m", False, "c", size)


def test_kept_uploads_are_bounded_by_count_bytes_and_age(tmp_path: Path):
    recent = RecentPredictions(tmp_path / "in", RecentLimits(max_items=3, max_age_seconds=3600, max_bytes=25))
    items = [_item(recent) for _ in range(3)]
    for item in items:
        recent.add(item)
    assert len(recent) == 2 and not items[0].audio.exists()  # 30 bytes > 25: the oldest went
    recent.add(_item(recent, size=20))
    assert len(recent) == 1
    aged = RecentPredictions(tmp_path / "aged", RecentLimits(max_age_seconds=0.05))
    old = _item(aged)
    aged.add(old)
    time.sleep(0.1)
    with pytest.raises(ApiError) as info:
        aged.take(old.prediction_id)
    assert info.value.status == 404 and not old.audio.exists()


def test_kept_uploads_of_a_previous_run_are_removed_at_start(tmp_path: Path):
    """Finding 7: every kill leaked a gvd-recent-* temporary folder; kept uploads now live in the
    feedback folder's .incoming/, emptied when the server starts."""
    folder = tmp_path / "fb" / ".incoming"
    folder.mkdir(parents=True)
    (folder / "tmpabc.wav").write_bytes(b"x")
    RecentPredictions(folder)
    assert list(folder.iterdir()) == []


def test_take_then_give_back_and_duplicate(tmp_path: Path):
    recent = RecentPredictions(tmp_path / "in")
    item = _item(recent)
    recent.add(item)
    taken = recent.take(item.prediction_id)
    with pytest.raises(ApiError) as info:
        recent.take(item.prediction_id)
    assert info.value.status == 409
    recent.give_back(taken)
    assert recent.take(item.prediction_id) is taken
