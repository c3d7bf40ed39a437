"""User corrections, stored so that the feedback folder is itself a training corpus.

Layout of a feedback folder (``gvd train --data <folder>`` reads it like any ``<root>/<label>/**`` corpus)::

    <folder>/female/<prediction_id>.<ext>     audio the user labelled female
    <folder>/male/<prediction_id>.<ext>       audio the user labelled male
    <folder>/feedback.csv                     one row per correction (header written once)
    <folder>/retrain_state.json               what the retraining trigger did last (atomic writes)
    <folder>/retrain-<timestamp>/             output and log of each retraining run

Every write is made safe against concurrent requests, other processes and crashes: the CSV is appended
under an exclusive ``flock`` and fsynced, audio files and the state file are written to a temporary name
and renamed into place, so a reader never sees half a file.

A retraining run starts once, in the background, when the corrections (rows whose correct label differs
from the predicted one) since the previous run reach a threshold; two runs never overlap.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from ..errors import GvdError

LABELS = ("female", "male")
CSV_NAME = "feedback.csv"
STATE_NAME = "retrain_state.json"
CSV_FIELDS = ("timestamp", "prediction_id", "file", "predicted_label", "p_female", "correct_label", "model")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUFFIX_PATTERN = re.compile(r"^\.[a-z0-9]{1,8}$")

# {gvd} runs this interpreter's gvd, so the command works without the venv on PATH. It is run by
# /bin/sh in the server's working folder; ../shared/data is the project's corpus of real recordings.
DEFAULT_RETRAIN_COMMAND = (
    "{gvd} train --data {feedback_dir} --data ../shared/data --out {out}/train"
    " && {gvd} export --train-dir {out}/train --out {out}/models"
)


class FeedbackError(GvdError):
    """A correction that cannot be stored."""


class InvalidFeedbackError(FeedbackError):
    """The correction itself is malformed (unknown label, unsafe id, no usable audio)."""


class UnknownPredictionError(FeedbackError):
    """The prediction id is unknown or its audio has already been discarded."""


class DuplicateFeedbackError(FeedbackError):
    """This prediction has already been corrected."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_label(label: str) -> str:
    """The correct label as stored: 'female' or 'male'."""
    value = str(label).strip().lower()
    if value not in LABELS:
        raise InvalidFeedbackError(f"correct_label must be 'female' or 'male', got {label!r}")
    return value


def check_prediction_id(prediction_id: str) -> str:
    """Ids become file names: only letters, digits, '-' and '_' are accepted."""
    if not isinstance(prediction_id, str) or not _ID_PATTERN.match(prediction_id):
        raise InvalidFeedbackError(
            f"prediction_id must be 1-64 letters, digits, '-' or '_', got {prediction_id!r}")
    return prediction_id


def safe_suffix(filename: str | None, default: str = ".bin") -> str:
    """The lower-case extension of an uploaded file name, or ``default`` when it is missing or odd."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if _SUFFIX_PATTERN.match(suffix) else default


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_replace(path: Path, fill: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``fill`` so that readers see the old file or the new one, never a part:
    a temporary name in the same folder, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic_replace(path, lambda handle: handle.write(data))


def atomic_copy(source: Path, path: Path) -> None:
    """Copy a file into place atomically."""

    def fill(handle: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, handle, 1 << 20)

    _atomic_replace(path, fill)


@contextmanager
def file_lock(path: Path, exclusive: bool = True) -> Iterator[None]:
    """``flock`` on a side file: excludes other processes and, because every call opens the file
    anew, other threads of this process too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class FeedbackRecord:
    """One row of feedback.csv."""

    timestamp: str
    prediction_id: str
    file: str  # relative to the feedback folder, e.g. "female/<id>.wav"
    predicted_label: str
    p_female: float | None
    correct_label: str
    model: str

    @property
    def is_correction(self) -> bool:
        return self.correct_label != self.predicted_label

    def to_row(self) -> list[str]:
        p = "" if self.p_female is None else f"{self.p_female:.6f}"
        return [self.timestamp, self.prediction_id, self.file, self.predicted_label, p,
                self.correct_label, self.model]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correction": self.is_correction}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> "FeedbackRecord":
        p = row.get("p_female") or ""
        return cls(row["timestamp"], row["prediction_id"], row["file"], row["predicted_label"],
                   float(p) if p else None, row["correct_label"], row.get("model") or "")


class FeedbackStore:
    """The feedback folder: labelled audio plus an append-only CSV of corrections."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.root / CSV_NAME
        self._lock_path = self.root / f".{CSV_NAME}.lock"

    def existing_audio(self, prediction_id: str) -> list[Path]:
        """Audio already stored for this prediction, in any label folder."""
        return [p for label in LABELS for p in (self.root / label).glob(f"{prediction_id}.*")
                if not p.name.endswith(".partial")]

    def add(self, audio: str | os.PathLike, *, prediction_id: str, predicted_label: str,
            p_female: float | None, correct_label: str, model: str, suffix: str | None = None) -> FeedbackRecord:
        """Store the audio under ``<label>/<id><suffix>`` and append its row; refuse a second correction."""
        prediction_id = check_prediction_id(prediction_id)
        correct_label = check_label(correct_label)
        audio = Path(audio)
        if not audio.is_file():
            raise UnknownPredictionError(f"the audio of prediction {prediction_id} is no longer available")
        suffix = safe_suffix(f"x{suffix}" if suffix else audio.name)
        target = self.root / correct_label / f"{prediction_id}{suffix}"
        record = FeedbackRecord(utc_now(), prediction_id, target.relative_to(self.root).as_posix(),
                                predicted_label, None if p_female is None else float(p_female),
                                correct_label, model)
        with file_lock(self._lock_path):
            if self.existing_audio(prediction_id):
                raise DuplicateFeedbackError(f"feedback for prediction {prediction_id} was already recorded")
            atomic_copy(audio, target)
            try:
                self._append(record)
            except BaseException:
                target.unlink(missing_ok=True)  # no audio without its row
                raise
        return record

    def _append(self, record: FeedbackRecord) -> None:
        """Append one row (and the header if the file is new); caller holds the lock."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        with open(self.csv_path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                writer.writerow(CSV_FIELDS)
            else:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":  # a crash cut the last row: start on a fresh line
                    buffer.write("\n")
            writer.writerow(record.to_row())
            handle.seek(0, os.SEEK_END)
            handle.write(buffer.getvalue().encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if size == 0:
            _fsync_dir(self.root)

    def records(self) -> list[FeedbackRecord]:
        """Every complete row, oldest first; a row cut short by a crash is skipped."""
        if not self.csv_path.exists():
            return []
        with file_lock(self._lock_path, exclusive=False):
            text = self.csv_path.read_text(encoding="utf-8")
        records = []
        for row in csv.DictReader(io.StringIO(text)):
            try:
                if None in row or any(row.get(name) is None for name in CSV_FIELDS):
                    continue
                records.append(FeedbackRecord.from_row(row))
            except (KeyError, ValueError):
                continue
        return records

    def count_corrections(self, start: int = 0) -> tuple[int, int]:
        """(rows, corrections among rows[start:]) — the retraining trigger's counters."""
        records = self.records()
        return len(records), sum(r.is_correction for r in records[start:])


# --------------------------------------------------------------------------------------------------
# Recent predictions: their audio is kept for a while so that feedback can refer to them by id.

@dataclass
class RecentPrediction:
    prediction_id: str
    audio: Path
    suffix: str
    predicted_label: str
    p_female: float | None
    model: str
    created: float = field(default_factory=time.monotonic)


class RecentPredictions:
    """A bounded store (count and age) of uploaded audio, in a private temporary folder."""

    def __init__(self, directory: str | os.PathLike | None = None, max_items: int = 100,
                 max_age_seconds: float = 3600.0):
        if max_items < 1 or max_age_seconds <= 0:
            raise ValueError("max_items and max_age_seconds must be positive")
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="gvd-recent-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items
        self.max_age_seconds = max_age_seconds
        self._items: OrderedDict[str, RecentPrediction] = OrderedDict()
        self._used: OrderedDict[str, None] = OrderedDict()  # ids already corrected, to answer 409
        self._lock = threading.Lock()

    def new_path(self, suffix: str) -> Path:
        """A fresh file name in the store's folder, for an upload being received."""
        fd, name = tempfile.mkstemp(dir=self.directory, suffix=suffix)
        os.close(fd)
        return Path(name)

    def add(self, item: RecentPrediction) -> None:
        with self._lock:
            self._items[item.prediction_id] = item
            self._evict()

    def _evict(self) -> None:
        now = time.monotonic()
        while self._items:
            oldest = next(iter(self._items.values()))
            if len(self._items) <= self.max_items and now - oldest.created <= self.max_age_seconds:
                break
            self._items.popitem(last=False)
            oldest.audio.unlink(missing_ok=True)

    def take(self, prediction_id: str) -> RecentPrediction:
        """Remove and return a prediction for feedback; :meth:`give_back` if storing it fails."""
        with self._lock:
            self._evict()
            item = self._items.pop(prediction_id, None)
            if item is None:
                if prediction_id in self._used:
                    raise DuplicateFeedbackError(f"feedback for prediction {prediction_id} was already recorded")
                raise UnknownPredictionError(
                    f"unknown or expired prediction_id {prediction_id!r}: the audio of the last "
                    f"{self.max_items} predictions is kept for {self.max_age_seconds / 60:g} minutes")
            self._used[prediction_id] = None
            while len(self._used) > 10 * self.max_items:
                self._used.popitem(last=False)
            return item

    def give_back(self, item: RecentPrediction) -> None:
        with self._lock:
            self._used.pop(item.prediction_id, None)
            self._items[item.prediction_id] = item

    def discard(self, item: RecentPrediction) -> None:
        item.audio.unlink(missing_ok=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        with self._lock:
            self._items.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The retraining trigger.

@dataclass(frozen=True)
class RetrainOptions:
    threshold: int = 20  # corrections since the previous run that start a new one
    command: str = DEFAULT_RETRAIN_COMMAND  # /bin/sh command; {gvd} {python} {feedback_dir} {out} {timestamp}
    cwd: str | None = None  # working folder of the command (default: the server's)
    nice: int = 10  # lower priority so that serving stays responsive while it trains

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("the retraining threshold must be at least 1")
        if not self.command.strip():
            raise ValueError("the retraining command is empty")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - alive, owned by someone else
        return True
    return True


class Retrainer:
    """Starts the retraining command when enough corrections have piled up; one run at a time.

    ``retrain_state.json`` records the counters and the last run; it is rewritten atomically under a
    lock, so a second server process on the same folder cannot start a parallel run.
    """

    def __init__(self, store: FeedbackStore, options: RetrainOptions = RetrainOptions()):
        self.store = store
        self.options = options
        self.state_path = store.root / STATE_NAME
        self._lock_path = store.root / f".{STATE_NAME}.lock"
        self._thread_lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    # state ----------------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            if isinstance(state, dict):
                return state
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        return {"status": "idle", "runs": 0, "rows_consumed": 0, "last": None}

    def _write_state(self, state: dict[str, Any]) -> None:
        atomic_write_bytes(self.state_path, json.dumps(state, indent=2, sort_keys=True).encode("utf-8"))

    def _refresh(self, state: dict[str, Any]) -> dict[str, Any]:
        """A run marked running whose process is gone (the server stopped meanwhile) is over."""
        watched = self._watcher is not None and self._watcher.is_alive()
        last = state.get("last") or {}
        if state.get("status") == "running" and not watched and not _pid_alive(last.get("pid")):
            state["status"] = "interrupted"
            last["finished"] = utc_now()
            last["note"] = "the process ended while no server was watching it; see its log"
            state["last"] = last
            self._write_state(state)
        return state

    def state(self) -> dict[str, Any]:
        """The state file plus the live counters."""
        with self._thread_lock, file_lock(self._lock_path):
            state = self._refresh(self._read_state())
        rows, corrections = self.store.count_corrections(int(state.get("rows_consumed", 0)))
        return {**state, "rows": rows, "corrections_pending": corrections,
                "threshold": self.options.threshold}

    # trigger --------------------------------------------------------------------------------------
    def maybe_start(self) -> bool:
        """Start a run if the threshold is reached and none is running; True if one was started."""
        with self._thread_lock, file_lock(self._lock_path):
            state = self._refresh(self._read_state())
            if state.get("status") == "running":
                return False
            consumed = int(state.get("rows_consumed", 0))
            rows, corrections = self.store.count_corrections(consumed)
            if corrections < self.options.threshold:
                return False
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            out = self.store.root / f"retrain-{stamp}"
            out.mkdir(parents=True, exist_ok=False)
            command = self._command(out, stamp)
            log_path = out / "retrain.log"
            argv = ["/bin/sh", "-c", command]
            if self.options.nice and shutil.which("nice"):
                argv = ["nice", "-n", str(self.options.nice), *argv]
            last = {"started": utc_now(), "finished": None, "returncode": None, "pid": None,
                    "command": command, "out_dir": str(out), "log": str(log_path),
                    "corrections": corrections, "rows": rows}
            # These corrections are used up even if the command cannot start, so that a broken
            # command fails once per threshold instead of on every later correction.
            state.update({"runs": int(state.get("runs", 0)) + 1, "rows_consumed": rows, "last": last})
            try:
                with open(log_path, "wb") as log:
                    process = subprocess.Popen(
                        argv, cwd=self.options.cwd, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True,
                        env={**os.environ, "GVD_FEEDBACK_DIR": str(self.store.root), "GVD_RETRAIN_OUT": str(out)})
            except OSError as exc:
                last.update(finished=utc_now(), note=f"the command could not start: {exc}")
                state["status"] = "failed"
                self._write_state(state)
                return False
            last["pid"] = process.pid
            state["status"] = "running"
            self._write_state(state)
            self._watcher = threading.Thread(target=self._watch, args=(process,), daemon=True,
                                             name="gvd-retrain-watcher")
            self._watcher.start()
            return True

    def _command(self, out: Path, stamp: str) -> str:
        values = {
            "gvd": f"{shlex.quote(sys.executable)} -m edge",
            "python": shlex.quote(sys.executable),
            "feedback_dir": shlex.quote(str(self.store.root)),
            "out": shlex.quote(str(out)),
            "timestamp": stamp,
        }
        command = self.options.command
        for key, value in values.items():  # only our placeholders: other braces stay untouched
            command = command.replace("{" + key + "}", value)
        return command

    def _watch(self, process: subprocess.Popen) -> None:
        returncode = process.wait()
        with self._thread_lock, file_lock(self._lock_path):
            state = self._read_state()
            last = state.get("last") or {}
            if last.get("pid") == process.pid:
                last.update({"finished": utc_now(), "returncode": returncode})
                state["status"] = "succeeded" if returncode == 0 else "failed"
                state["last"] = last
                self._write_state(state)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the run this process started (tests, shutdown); returns the state."""
        watcher = self._watcher
        if watcher is not None:
            watcher.join(timeout)
        return self.state()
