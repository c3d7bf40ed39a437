"""The labelled test windows a training run leaves next to ``training.json``: the file format, once.

Training writes the clean windows of its held-out test speakers with their labels; the export step
reads them to prove parity on every test window and to judge int8 by real clip accuracy, without
importing any training code. One ``.npz`` (no pickles) holding:

    format_version  int, FORMAT_VERSION
    features        float32 [total frames, n_features]: every window's frames, one after another
    lengths         int64 [windows]: frames of each window (they follow each other in ``features``)
    labels          int8 [windows]: 1 = female, 0 = male (index into edge.metadata.LABELS)
    speech_seconds  float64 [windows]: speech in the window (the runtime's aggregation weight)
    recordings      str [windows]: the recording each window comes from ("corpus/file")
    corpora         str [windows]: the recording's corpus
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GvdError
from .files import atomic_write

TEST_WINDOWS_NAME = "test_windows.npz"
FORMAT_VERSION = 1
_KEYS = ("format_version", "features", "lengths", "labels", "speech_seconds", "recordings", "corpora")


class WindowsFileError(GvdError, ValueError):
    """A labelled-windows file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class LabelledWindows:
    """Model inputs with their truth; every per-window array has one entry per window."""

    features: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    speech_seconds: np.ndarray
    recordings: np.ndarray
    corpora: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.lengths)
        per_window = {"labels": self.labels, "speech_seconds": self.speech_seconds,
                      "recordings": self.recordings, "corpora": self.corpora}
        wrong = [name for name, values in per_window.items() if len(values) != count]
        if wrong:
            raise WindowsFileError(f"{', '.join(wrong)} do not have one entry per window ({count})")
        if self.features.ndim != 2 or int(np.sum(self.lengths)) != self.features.shape[0]:
            raise WindowsFileError(f"features {self.features.shape} do not hold the {int(np.sum(self.lengths))} "
                                   "frames the lengths add up to")
        if count and (np.min(self.lengths) < 1 or not set(np.unique(self.labels)) <= {0, 1}):
            raise WindowsFileError("every window needs at least one frame and a label of 0 or 1")

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @classmethod
    def from_windows(cls, windows: list[np.ndarray], labels: list[int], speech_seconds: list[float],
                     recordings: list[str], corpora: list[str], n_features: int) -> LabelledWindows:
        features = (np.concatenate(windows) if windows else np.zeros((0, n_features))).astype(np.float32)
        return cls(features=features, lengths=np.array([len(w) for w in windows], dtype=np.int64),
                   labels=np.array(labels, dtype=np.int8), speech_seconds=np.array(speech_seconds, dtype=np.float64),
                   recordings=np.array(recordings, dtype=str), corpora=np.array(corpora, dtype=str))

    def windows(self) -> list[np.ndarray]:
        """Each window's (frames, n_features) matrix."""
        return np.split(self.features, np.cumsum(self.lengths)[:-1]) if len(self) else []


def write_labelled_windows(path: str | os.PathLike[str], windows: LabelledWindows) -> Path:
    arrays: dict[str, Any] = {
        "format_version": np.array(FORMAT_VERSION), "features": windows.features, "lengths": windows.lengths,
        "labels": windows.labels, "speech_seconds": windows.speech_seconds, "recordings": windows.recordings,
        "corpora": windows.corpora,
    }
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def is_labelled_windows_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is in this format (other window files only share the .npz container)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "format_version" in data.files and "lengths" in data.files
    except (OSError, ValueError):
        return False


def read_labelled_windows(path: str | os.PathLike[str]) -> LabelledWindows:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _KEYS if key not in data.files]
            if missing:
                raise WindowsFileError(f"{path}: not a labelled windows file (lacks {', '.join(missing)})")
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise WindowsFileError(f"{path}: labelled windows format {version}, this gvd reads {FORMAT_VERSION}")
            arrays = {key: data[key] for key in _KEYS if key != "format_version"}
    except (OSError, ValueError) as exc:
        if isinstance(exc, WindowsFileError):
            raise
        raise WindowsFileError(f"{path}: unreadable labelled windows ({exc})") from exc
    try:
        return LabelledWindows(**arrays)
    except WindowsFileError as exc:
        raise WindowsFileError(f"{path}: {exc}") from exc
