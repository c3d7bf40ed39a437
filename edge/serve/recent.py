"""The audio of recent predictions, kept for a while so that a correction can refer to it by id.

The files live in ``<feedback-dir>/.incoming/`` (same file system as the store, so storing a
correction is a rename, not a copy) and the folder is emptied at every start: nothing leaks into
``/tmp`` when the server is killed. The set is bounded by count, age and total bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ApiError


@dataclass
class RecentPrediction:
    prediction_id: str
    audio: Path
    predicted_label: str
    p_female: float | None
    model: str
    mixed: bool
    client: str
    size: int
    created: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RecentLimits:
    max_items: int = 100
    max_age_seconds: float = 3600.0
    max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_age_seconds <= 0 or self.max_bytes <= 0:
            raise ValueError("the limits of kept uploads must be positive")


class RecentPredictions:
    def __init__(self, directory: Path, limits: RecentLimits = RecentLimits()):
        self.directory = directory
        self.limits = limits
        shutil.rmtree(directory, ignore_errors=True)  # uploads of a previous run can no longer be referred to
        directory.mkdir(parents=True, exist_ok=True)
        self._items: OrderedDict[str, RecentPrediction] = OrderedDict()
        self._used: OrderedDict[str, None] = OrderedDict()  # ids already corrected, to answer 409
        self._bytes = 0
        self._lock = threading.Lock()

    def new_path(self, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.directory, suffix=suffix)
        os.close(fd)
        return Path(name)

    def add(self, item: RecentPrediction) -> None:
        with self._lock:
            self._items[item.prediction_id] = item
            self._bytes += item.size
            self._evict()

    def _evict(self) -> None:
        now = time.monotonic()
        while self._items:
            oldest = next(iter(self._items.values()))
            if (len(self._items) <= self.limits.max_items and self._bytes <= self.limits.max_bytes
                    and now - oldest.created <= self.limits.max_age_seconds):
                break
            self._items.popitem(last=False)
            self._bytes -= oldest.size
            oldest.audio.unlink(missing_ok=True)

    def take(self, prediction_id: str) -> RecentPrediction:
        """Remove and return a prediction for storing; :meth:`give_back` if storing fails."""
        with self._lock:
            self._evict()
            item = self._items.pop(prediction_id, None)
            if item is None:
                if prediction_id in self._used:
                    raise ApiError(409, "already_recorded",
                                   f"feedback for prediction {prediction_id} was already recorded")
                raise ApiError(404, "unknown_prediction",
                               f"unknown or expired prediction_id {prediction_id!r}: the audio of the last "
                               f"{self.limits.max_items} predictions is kept for "
                               f"{self.limits.max_age_seconds / 60:g} minutes")
            self._bytes -= item.size
            self._used[prediction_id] = None
            while len(self._used) > 10 * self.limits.max_items:
                self._used.popitem(last=False)
            return item

    def give_back(self, item: RecentPrediction) -> None:
        with self._lock:
            self._used.pop(item.prediction_id, None)
            self._items[item.prediction_id] = item
            self._bytes += item.size

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
        shutil.rmtree(self.directory, ignore_errors=True)
