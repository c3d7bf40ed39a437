"""The feedback store: labelled audio in ``<label>/<prediction_id>.<ext>`` plus a SQLite database.

Layout of a feedback folder (``gvd train --data <folder>`` reads it like any ``<root>/<label>/**`` corpus)::

    <folder>/female/<prediction_id>.<ext>    audio the user labelled female
    <folder>/male/<prediction_id>.<ext>      audio the user labelled male
    <folder>/feedback.sqlite3                one row per correction, the totals, the retraining runs (WAL)
    <folder>/.incoming/                      audio of recent predictions (emptied at every start)
    <folder>/.tmp/                           audio being copied in (emptied at every start)
    <folder>/runs/<n>/                       output and log of retraining run n

Crash safety: a correction's audio is written, fsynced and renamed into its label folder *before*
its row is committed, one transaction per correction. After a crash there can be audio without a
row (an orphan), never a row without audio; the start-up sweep deletes orphans, partial files and
left-over temporary folders. Quotas (bytes, rows) are checked against a totals row that every
transaction keeps up to date, so the bookkeeping per request is O(1) whatever the store's size.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ApiError

LABELS = ("female", "male")
DB_NAME = "feedback.sqlite3"
LEGACY_CSV = "feedback.csv"
TMP_DIR = ".tmp"
MB = 1024 * 1024
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    prediction_id   TEXT PRIMARY KEY,
    file            TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    predicted_label TEXT NOT NULL,
    p_female        REAL,
    correct_label   TEXT NOT NULL,
    model           TEXT NOT NULL,
    client          TEXT NOT NULL,
    created         TEXT NOT NULL,
    run_id          INTEGER
);
CREATE INDEX IF NOT EXISTS corrections_run ON corrections (run_id);
CREATE TABLE IF NOT EXISTS totals (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    rows    INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    pending INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0, 0);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    status      TEXT NOT NULL,
    started     TEXT NOT NULL,
    finished    TEXT,
    returncode  INTEGER,
    pid         INTEGER,
    proc_start  TEXT,
    out_dir     TEXT NOT NULL,
    command     TEXT NOT NULL,
    corrections INTEGER NOT NULL,
    note        TEXT
);
"""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_prediction_id(prediction_id: Any) -> str:
    """Ids become file names: only letters, digits, '-' and '_' are accepted."""
    if not isinstance(prediction_id, str) or not _ID_PATTERN.match(prediction_id):
        raise ApiError(422, "invalid_prediction_id",
                       f"prediction_id must be 1-64 letters, digits, '-' or '_', got {prediction_id!r}")
    return prediction_id


def check_label(label: Any) -> str:
    if label not in LABELS:
        raise ApiError(422, "invalid_label", f"correct_label must be 'female' or 'male', got {label!r}")
    return label


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class StoreLimits:
    max_bytes: int = 1024 * MB
    max_rows: int = 100_000
    per_client_per_minute: int = 20  # corrections one client may record per minute

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_rows <= 0 or self.per_client_per_minute <= 0:
            raise ValueError("feedback quotas must be positive")


@dataclass(frozen=True)
class Correction:
    prediction_id: str
    file: str  # relative to the feedback folder, e.g. "female/<id>.wav"
    predicted_label: str
    p_female: float | None
    correct_label: str
    model: str
    created: str

    @property
    def is_correction(self) -> bool:
        return self.correct_label != self.predicted_label

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correction": self.is_correction}


@dataclass(frozen=True)
class Totals:
    rows: int
    bytes: int
    pending: int  # corrections (label changed) not yet used by a retraining run


@dataclass(frozen=True)
class SweepReport:
    orphans: int  # audio without a row
    partials: int  # files cut short by a crash
    missing: int  # rows whose audio is gone (deleted by hand)
    imported_csv_rows: int


class ClientRate:
    """At most ``per_minute`` events per client in any sliding minute; O(1) per event, bounded memory."""

    def __init__(self, per_minute: int, max_clients: int = 10_000):
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._events: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = [t for t in self._events.pop(client, []) if now - t < 60.0]
            if len(times) >= self.per_minute:
                self._events[client] = times
                retry = max(1, int(60.0 - (now - times[0])) + 1)
                raise ApiError(429, "rate_limited",
                               f"at most {self.per_minute} corrections per minute from one client; "
                               f"try again in {retry} s", headers={"Retry-After": str(retry)})
            times.append(now)
            self._events[client] = times
            while len(self._events) > self.max_clients:
                self._events.popitem(last=False)


def read_recent(root: str | os.PathLike, limit: int) -> list[tuple[Path, Correction]]:
    """The newest corrections of a folder another process may be serving, read-only (no sweep)."""
    root = Path(root).expanduser().resolve()
    if not (root / DB_NAME).is_file():
        return []
    db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True, timeout=30.0)
    try:
        rows = db.execute("SELECT prediction_id, file, predicted_label, p_female, correct_label, model, created "
                          "FROM corrections ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    finally:
        db.close()
    return [(root / row[1], Correction(*row)) for row in rows]


class FeedbackStore:
    def __init__(self, root: str | os.PathLike, limits: StoreLimits = StoreLimits()):
        self.root = Path(root).expanduser().resolve()
        self.limits = limits
        for folder in (self.root, *(self.root / label for label in LABELS)):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / DB_NAME, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged correction survives power loss
        self._db.executescript(SCHEMA)
        imported = self._import_legacy_csv()
        self.last_sweep = self._sweep(imported)

    # -- transactions -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, exclusive among threads and processes sharing the folder."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- corrections ------------------------------------------------------------------------------
    def totals(self) -> Totals:
        return Totals(*self.query("SELECT rows, bytes, pending FROM totals WHERE id = 1")[0])

    def add(self, audio: Path, *, prediction_id: str, predicted_label: str, p_female: float | None,
            correct_label: str, model: str, client: str, move: bool = False) -> Correction:
        """Store the audio under ``<label>/<id><suffix>`` and commit its row; ``move`` renames instead of copying."""
        prediction_id = check_prediction_id(prediction_id)
        correct_label = check_label(correct_label)
        size = audio.stat().st_size
        target = self.root / correct_label / f"{prediction_id}{audio.suffix.lower()}"
        record = Correction(prediction_id, target.relative_to(self.root).as_posix(), predicted_label,
                            None if p_female is None else float(p_female), correct_label, model, utc_now())
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM corrections WHERE prediction_id = ?", (prediction_id,)).fetchone():
                raise ApiError(409, "already_recorded", f"feedback for prediction {prediction_id} was already recorded")
            rows, stored = db.execute("SELECT rows, bytes FROM totals WHERE id = 1").fetchone()
            self._check_quota(rows, stored, size)
            self._place(audio, target, move)
            try:
                db.execute("INSERT INTO corrections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                           (prediction_id, record.file, size, predicted_label, record.p_female, correct_label,
                            model, client, record.created))
                db.execute("UPDATE totals SET rows = rows + 1, bytes = bytes + ?, pending = pending + ? WHERE id = 1",
                           (size, int(record.is_correction)))
            except BaseException:
                self._unplace(audio, target, move)
                raise
        return record

    def _check_quota(self, rows: int, stored: int, size: int) -> None:
        if rows + 1 > self.limits.max_rows:
            raise ApiError(507, "storage_full", f"the feedback store holds its maximum of {self.limits.max_rows} "
                           "corrections; an administrator must archive or raise --feedback-max-rows")
        if stored + size > self.limits.max_bytes:
            raise ApiError(507, "storage_full", f"the feedback store would pass its limit of "
                           f"{self.limits.max_bytes / MB:g} MB; an administrator must archive or raise "
                           "--feedback-max-mb")

    def _place(self, audio: Path, target: Path, move: bool) -> None:
        """Audio in place and durable (fsynced file and folder) before the row is committed."""
        if move:
            _fsync_file(audio)
            os.replace(audio, target)
        else:
            partial = self.root / TMP_DIR / f"{target.name}.partial"
            partial.parent.mkdir(exist_ok=True)
            shutil.copyfile(audio, partial)
            _fsync_file(partial)
            os.replace(partial, target)
        fsync_dir(target.parent)

    @staticmethod
    def _unplace(audio: Path, target: Path, move: bool) -> None:
        if move:
            os.replace(target, audio)
        else:
            target.unlink(missing_ok=True)

    def recent(self, limit: int) -> list[Correction]:
        rows = self.query("SELECT prediction_id, file, predicted_label, p_female, correct_label, model, created "
                          "FROM corrections ORDER BY rowid DESC LIMIT ?", (limit,))
        return [Correction(*row) for row in rows]

    def records(self) -> list[Correction]:
        rows = self.query("SELECT prediction_id, file, predicted_label, p_female, correct_label, model, created "
                          "FROM corrections ORDER BY rowid")
        return [Correction(*row) for row in rows]

    # -- start-up: legacy CSV, sweep ----------------------------------------------------------------
    def _import_legacy_csv(self) -> int:
        """Rows of a CSV feedback folder (gvd before the SQLite store) whose audio still exists."""
        path = self.root / LEGACY_CSV
        if not path.is_file():
            return 0
        imported = 0
        with open(path, newline="", encoding="utf-8") as handle, self.transaction() as db:
            for row in csv.DictReader(handle):
                try:
                    audio = self.root / row["file"]
                    if row["correct_label"] not in LABELS or not _ID_PATTERN.match(row["prediction_id"]) \
                            or audio.parent.parent != self.root or not audio.is_file():
                        continue
                    p = float(row["p_female"]) if row.get("p_female") else None
                    db.execute("INSERT OR IGNORE INTO corrections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                               (row["prediction_id"], row["file"], audio.stat().st_size, row["predicted_label"], p,
                                row["correct_label"], row.get("model") or "", "imported", row["timestamp"]))
                    imported += 1
                except (KeyError, TypeError, ValueError):
                    continue  # a row cut short by a crash
        os.replace(path, path.with_name(LEGACY_CSV + ".imported"))
        return imported

    def _sweep(self, imported: int) -> SweepReport:
        shutil.rmtree(self.root / TMP_DIR, ignore_errors=True)
        partials = 0
        for pattern in ("*.partial", "*/*.partial", "*/.*.partial", ".*.partial"):
            for path in self.root.glob(pattern):
                path.unlink(missing_ok=True)
                partials += 1
        with self.transaction() as db:
            files = {row[0] for row in db.execute("SELECT file FROM corrections")}
            orphans = 0
            for label in LABELS:
                for path in (self.root / label).iterdir():
                    if f"{label}/{path.name}" not in files and path.is_file():
                        path.unlink()
                        orphans += 1
            missing = [f for f in files if not (self.root / f).is_file()]
            db.executemany("DELETE FROM corrections WHERE file = ?", [(f,) for f in missing])
            db.execute("UPDATE totals SET rows = (SELECT COUNT(*) FROM corrections), "
                       "bytes = (SELECT COALESCE(SUM(bytes), 0) FROM corrections), "
                       "pending = (SELECT COUNT(*) FROM corrections WHERE run_id IS NULL "
                       "AND predicted_label != correct_label) WHERE id = 1")
        if orphans or partials or missing:
            for label in LABELS:
                fsync_dir(self.root / label)
        return SweepReport(orphans, partials, len(missing), imported)
