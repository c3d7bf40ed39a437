"""Prove that an exported ONNX model computes what the Keras model computes.

Windows come from the files training writes next to ``training.json``: ``test_windows.npz`` (every
clean test window with its label, format in :mod:`edge.labelled_windows`) and ``parity_windows.npz``
(a sample of test windows, some cropped). The latter, and any other window file given to the
exporter, may use the per-window format, one entry per window i:
    features_<i>   float32 (time, n_features), required
    label_<i>      0 = male, 1 = female (optional; or one array ``labels`` of length N)
    clip_<i>       clip id, int or str (optional; or one array ``clips``); windows of a clip are
                   aggregated as the runtime does (speech-weighted mean), else each window is a clip
    speech_<i>     seconds of speech in the window (optional; or one array ``speech_seconds``)
Synthetic windows (random feature matrices of several lengths) are always added so that the
check also covers inputs the test split does not contain.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.labelled_windows import WindowsFileError, is_labelled_windows_file, read_labelled_windows
from edge.pipeline import aggregate

from .errors import ExportError, ParityError
from .timing import WINDOW_FRAMES

DEFAULT_TOLERANCE = 1e-5
_BATCH = 256


@dataclass
class WindowSet:
    windows: list[np.ndarray]
    labels: np.ndarray | None = None  # per window, 1 = female
    clips: list | None = None  # per window clip id
    speech_seconds: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.windows)

    def clip_groups(self) -> dict:
        """clip id -> window indices (each window is its own clip when no ids are given)."""
        groups: dict = defaultdict(list)
        ids = self.clips if self.clips is not None else list(range(len(self.windows)))
        for index, clip in enumerate(ids):
            groups[clip].append(index)
        return dict(groups)

    @staticmethod
    def concat(parts: list[WindowSet]) -> WindowSet:
        """One set from several; clip ids stay distinct by pairing them with the part's position."""
        if len(parts) == 1:
            return parts[0]

        def per_window(name: str, fill):
            if all(getattr(p, name) is None for p in parts):
                return None
            return np.concatenate([np.full(len(p), fill) if getattr(p, name) is None else getattr(p, name)
                                   for p in parts])

        clips = [(k, clip) for k, p in enumerate(parts)
                 for clip in (p.clips if p.clips is not None else range(len(p)))]
        return WindowSet(windows=[w for p in parts for w in p.windows], labels=per_window("labels", -1),
                         clips=clips, speech_seconds=per_window("speech_seconds", 0.0),
                         source="+".join(p.source for p in parts))


def load_windows(path: str | Path, n_mfcc: int | None = None) -> WindowSet:
    """Read a window file (either format in the module docstring); ``n_mfcc`` is the expected width."""
    path = Path(path)
    if is_labelled_windows_file(path):
        return _load_labelled(path, n_mfcc)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read parity windows from {path}: {exc}") from exc
    with data:
        indices = sorted(int(m.group(1)) for key in data.files if (m := re.fullmatch(r"features_(\d+)", key)))
        if not indices:
            raise ExportError(f"{path} holds no features_<i> arrays")
        windows = [_window(data, path, i, n_mfcc) for i in indices]
        labels = _per_window(data, path, indices, "label", "labels")
        clips = _per_window(data, path, indices, "clip", "clips")
        speech = _per_window(data, path, indices, "speech", "speech_seconds")
    return WindowSet(windows=windows, labels=None if labels is None else labels.astype(np.int64),
                     clips=None if clips is None else clips.tolist(),
                     speech_seconds=None if speech is None else speech.astype(np.float64), source=path.name)


def _window(data, path: Path, i: int, n_features: int | None) -> np.ndarray:
    window = np.asarray(data[f"features_{i}"], dtype=np.float32)
    if window.ndim != 2 or (n_features is not None and window.shape[1] != n_features) or window.shape[0] < 1:
        raise ExportError(f"{path}: features_{i} has shape {window.shape}, expected (time, {n_features})")
    if not np.all(np.isfinite(window)):
        raise ExportError(f"{path}: features_{i} contains NaN or infinite values")
    return window


def _per_window(data, path: Path, indices: list[int], single: str, array: str) -> np.ndarray | None:
    """One value per window, from one array ``array`` or from ``<single>_<i>`` entries; None when absent."""
    if array in data.files:
        values = np.asarray(data[array])
        if len(values) != len(indices):
            raise ExportError(f"{path}: '{array}' has {len(values)} entries for {len(indices)} windows")
        return values
    if all(f"{single}_{i}" in data.files for i in indices):
        return np.asarray([data[f"{single}_{i}"].item() for i in indices])
    return None


def _load_labelled(path: Path, n_features: int | None) -> WindowSet:
    try:
        labelled = read_labelled_windows(path)
    except WindowsFileError as exc:
        raise ExportError(str(exc)) from exc
    if not len(labelled):
        raise ExportError(f"{path} holds no windows")
    if n_features is not None and labelled.n_features != n_features:
        raise ExportError(f"{path}: windows have {labelled.n_features} features per frame, "
                          f"the model takes {n_features}")
    if not np.all(np.isfinite(labelled.features)):
        raise ExportError(f"{path}: the windows contain NaN or infinite values")
    return WindowSet(windows=labelled.windows(), labels=labelled.labels.astype(np.int64),
                     clips=labelled.recordings.tolist(), speech_seconds=labelled.speech_seconds, source=path.name)


def synthetic_windows(n_mfcc: int, count: int = 48, seed: int = 0, frames: int = WINDOW_FRAMES) -> WindowSet:
    """Random normalised-feature-like windows: full windows of ``frames`` frames and shorter speech-only ones."""
    rng = np.random.default_rng(seed)
    lengths = [frames] * (count // 2) + list(rng.integers(min(16, frames), frames, size=count - count // 2))
    windows = [rng.standard_normal((int(n), n_mfcc)).astype(np.float32) * rng.uniform(0.5, 2.0)
               for n in lengths]
    return WindowSet(windows=windows, source="synthetic")


def _batches(windows: list[np.ndarray]):
    """Index groups of equal-length windows (the models take one length per batch)."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, window in enumerate(windows):
        by_length[window.shape[0]].append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), _BATCH):
            chunk = indices[start:start + _BATCH]
            yield chunk, np.stack([windows[i] for i in chunk])


def _keras_runner(model):
    """Inference function for the model. On the TensorFlow backend one graph traced with a dynamic
    time axis serves every window length (eager calls re-trace the RNN per length: ~30x slower);
    its outputs equal eager ones bit for bit."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda batch: model(batch, training=False)
    import tensorflow as tf

    n_inputs = int(model.inputs[0].shape[-1])
    signature = [tf.TensorSpec((None, None, n_inputs), tf.float32)]
    return tf.function(lambda batch: model(batch, training=False), input_signature=signature)


def keras_outputs(model, windows: list[np.ndarray]) -> np.ndarray:
    """Every output of the Keras model (row 0: p_female, row 1: p_speech when present), one pass."""
    run = _keras_runner(model)
    out = np.empty((len(model.outputs), len(windows)), dtype=np.float64)
    for chunk, batch in _batches(windows):
        result = run(batch)
        for row, values in enumerate(result if isinstance(result, (list, tuple)) else [result]):
            out[row, chunk] = np.asarray(values, dtype=np.float64).reshape(-1)
    return out


def onnx_outputs(session, windows: list[np.ndarray]) -> np.ndarray:
    """Every output of the ONNX session, in graph order (p_female, then p_speech), one pass."""
    name = session.get_inputs()[0].name
    out = np.empty((len(session.get_outputs()), len(windows)), dtype=np.float64)
    for chunk, batch in _batches(windows):
        for row, values in enumerate(session.run(None, {name: batch})):
            out[row, chunk] = np.asarray(values, dtype=np.float64).reshape(-1)
    return out


def keras_probabilities(model, windows: list[np.ndarray]) -> np.ndarray:
    """p_female of the Keras model for every window."""
    return keras_outputs(model, windows)[0]


def onnx_probabilities(session, windows: list[np.ndarray]) -> np.ndarray:
    """p_female of the ONNX session for every window."""
    return onnx_outputs(session, windows)[0]


def clip_probabilities(probabilities: np.ndarray, windows: WindowSet) -> dict:
    """clip id -> clip probability, aggregated as the runtime does."""
    speech = windows.speech_seconds if windows.speech_seconds is not None else np.ones(len(windows))
    return {clip: aggregate(probabilities[idx], speech[idx]) for clip, idx in windows.clip_groups().items()}


def clip_accuracy(probabilities: np.ndarray, windows: WindowSet, threshold: float) -> float | None:
    """Share of labelled clips decided correctly (None without labels)."""
    if windows.labels is None:
        return None
    correct = total = 0
    for idx in windows.clip_groups().values():
        labels = windows.labels[idx]
        labels = labels[labels >= 0]
        if labels.size == 0:
            continue
        truth = int(round(labels.mean()))
        speech = windows.speech_seconds[idx] if windows.speech_seconds is not None else np.ones(len(idx))
        decided = int(aggregate(probabilities[idx], speech) >= threshold)
        correct += decided == truth
        total += 1
    return correct / total if total else None


@dataclass(frozen=True)
class ParityReport:
    windows: int
    clips: int
    max_abs_diff: float
    window_decision_mismatches: int
    clip_decision_mismatches: int
    tolerance: float
    source: str

    @property
    def passed(self) -> bool:
        # Window decisions are reported; the contract is on clips (what a user sees).
        return self.max_abs_diff <= self.tolerance and self.clip_decision_mismatches == 0

    def to_dict(self) -> dict:
        return {"windows": self.windows, "clips": self.clips, "max_abs_diff": self.max_abs_diff,
                "window_decision_mismatches": self.window_decision_mismatches,
                "clip_decision_mismatches": self.clip_decision_mismatches, "tolerance": self.tolerance,
                "source": self.source, "passed": self.passed}


def compare(reference: np.ndarray, candidate: np.ndarray, windows: WindowSet, threshold: float,
            tolerance: float = DEFAULT_TOLERANCE) -> ParityReport:
    diff = float(np.max(np.abs(reference - candidate))) if len(reference) else 0.0
    window_mismatch = int(np.sum((reference >= threshold) != (candidate >= threshold)))
    ref_clips = clip_probabilities(reference, windows)
    cand_clips = clip_probabilities(candidate, windows)
    clip_mismatch = sum((ref_clips[c] >= threshold) != (cand_clips[c] >= threshold) for c in ref_clips)
    return ParityReport(windows=len(windows), clips=len(ref_clips), max_abs_diff=diff,
                        window_decision_mismatches=window_mismatch, clip_decision_mismatches=int(clip_mismatch),
                        tolerance=tolerance, source=windows.source)


def require_parity(report: ParityReport, what: str) -> None:
    """Fail loudly when the ONNX model does not reproduce Keras."""
    if not report.passed:
        raise ParityError(
            f"{what}: ONNX differs from Keras on {report.source}: max |diff| {report.max_abs_diff:.3g} "
            f"(tolerance {report.tolerance:g}), {report.window_decision_mismatches} window and "
            f"{report.clip_decision_mismatches} clip decisions differ out of {report.windows} windows / "
            f"{report.clips} clips"
        )
