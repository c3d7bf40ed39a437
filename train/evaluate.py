"""Clip-level evaluation, exactly as the runtime decides: window probabilities, speech-weighted mean.

Every number here is per recording (clip), never per window: windows of one recording are not
independent and a window-level score would flatter long files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.pipeline import aggregate

from .data import Recording
from .dataset import Windows


def predict_windows(model, windows: Windows, batch_size: int = 256) -> np.ndarray:
    """p_female for every window; windows of one length are batched together (no padding, no mask)."""
    probs = np.zeros(len(windows), dtype=np.float64)
    if not len(windows):
        return probs
    lengths = windows.lengths
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        for start in range(0, idx.size, batch_size):
            chunk = idx[start : start + batch_size]
            x = np.stack([windows.features[i] for i in chunk]).astype(np.float32)
            probs[chunk] = np.asarray(model.predict_on_batch(x)).reshape(-1)
    return probs


@dataclass
class ClipScores:
    recordings: list[Recording]
    p_female: np.ndarray  # NaN where the recording had no speech window
    y: np.ndarray

    @property
    def has_speech(self) -> np.ndarray:
        return ~np.isnan(self.p_female)

    def subset(self, mask: np.ndarray) -> ClipScores:
        idx = np.flatnonzero(mask)
        return ClipScores([self.recordings[i] for i in idx], self.p_female[idx], self.y[idx])


def clip_scores(recordings: Sequence[Recording], windows: Windows, window_probs: np.ndarray,
                indices: Sequence[int]) -> ClipScores:
    """Aggregate clean (variant 0) windows per recording with :func:`edge.pipeline.aggregate`."""
    by_rec: dict[int, list[int]] = defaultdict(list)
    for i, (rec, variant) in enumerate(zip(windows.recording, windows.variant, strict=True)):
        if variant == 0:
            by_rec[rec].append(i)
    speech = np.asarray(windows.speech)
    p = np.full(len(indices), np.nan)
    for k, index in enumerate(indices):
        members = by_rec.get(index)
        if members:
            p[k] = aggregate(window_probs[members], speech[members])
    recs = [recordings[i] for i in indices]
    return ClipScores(recs, p, np.array([r.y for r in recs], dtype=np.int64))


def equal_error(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(equal error rate, threshold where false-female and false-male rates meet)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, p)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(np.clip(thresholds[i], 0.0, 1.0))


def clip_metrics(scores: ClipScores, threshold: float = 0.5) -> dict:
    """Accuracy, precision/recall/F1 (female = positive), ROC AUC, EER and its threshold."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    speech = scores.subset(scores.has_speech)
    out: dict = {"n_clips": len(scores.recordings), "n_no_speech": int((~scores.has_speech).sum())}
    if not len(speech.recordings):
        return out
    pred = (speech.p_female >= threshold).astype(int)
    y = speech.y
    out.update({
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1) if np.any(y == c)])),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "n_female": int(y.sum()),
        "n_male": int((1 - y).sum()),
    })
    if len(np.unique(y)) == 2:
        eer, eer_threshold = equal_error(y, speech.p_female)
        out.update({"roc_auc": float(roc_auc_score(y, speech.p_female)), "eer": eer, "eer_threshold": eer_threshold})
    return out


def grouped_metrics(scores: ClipScores, key, threshold: float = 0.5) -> dict[str, dict]:
    """Metrics per group (e.g. per corpus, per file format)."""
    groups = sorted({key(r) for r in scores.recordings})
    out = {}
    for group in groups:
        mask = np.array([key(r) == group for r in scores.recordings])
        out[group] = clip_metrics(scores.subset(mask), threshold)
    return out


def format_of(rec: Recording) -> str:
    """Codec family of a file, for the per-format check (m4a and mp4 both hold AAC)."""
    return {"m4a": "aac", "mp4": "aac", "aac": "aac"}.get(rec.format, rec.format)


def evaluate(model, recordings: Sequence[Recording], windows: Windows, indices: Sequence[int],
             threshold: float = 0.5) -> tuple[dict, ClipScores]:
    """All clip metrics of ``model`` on the recordings ``indices``, overall, per corpus, per format."""
    wanted = set(indices)
    mask = np.array([r in wanted and v == 0 for r, v in zip(windows.recording, windows.variant, strict=True)],
                    dtype=bool)
    subset = windows.select(mask) if len(windows) else windows
    probs = predict_windows(model, subset)
    scores = clip_scores(recordings, subset, probs, list(indices))
    metrics = clip_metrics(scores, threshold)
    metrics["per_corpus"] = grouped_metrics(scores, lambda r: r.corpus, threshold)
    indo = scores.subset(np.array([r.corpus == "indonesian" for r in scores.recordings], dtype=bool))
    if len(indo.recordings):
        metrics["indonesian_per_format"] = grouped_metrics(indo, format_of, threshold)
    return metrics, scores
