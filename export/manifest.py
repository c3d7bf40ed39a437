"""Choosing what ``manifest.json`` says: the default model and its headline accuracy.

The manifest format itself (entries, reading, atomic writing, verification) is the runtime's
:mod:`edge.manifest`; these names are re-exported for the export step.
"""

from __future__ import annotations

import math
from typing import Any

from edge.files import sha256_file
from edge.manifest import MANIFEST_FORMAT, MANIFEST_NAME, ManifestEntry, verify_manifest, write_manifest

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "ManifestEntry", "choose_default", "default_criterion",
           "loco_accuracy", "sha256_file", "verify_manifest", "write_manifest"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


WORST_KEY = "loco_worst_balanced_accuracy"


def loco_accuracy(metrics: dict[str, Any]) -> float | None:
    """Leave-one-corpus-out clip accuracy from training metrics, whatever nesting training chose.

    The worst held-out corpus's balanced accuracy when training recorded it (the figure that picks
    the default model); otherwise a key mentioning 'loco' / 'leave_one': a number, a dict with an
    accuracy entry, or a dict of per-corpus dicts (their mean accuracy).
    """
    if (worst := _number(metrics.get(WORST_KEY))) is not None:
        return worst
    for key, value in metrics.items():
        lowered = key.lower()
        if "loco" in lowered or "leave_one" in lowered:
            if (number := _loco_entry_accuracy(lowered, value)) is not None:
                return number
    for value in metrics.values():  # one level down, e.g. metrics["clip"]["loco"]
        if isinstance(value, dict) and (found := loco_accuracy(value)) is not None:
            return found
    return None


def _loco_entry_accuracy(lowered_key: str, value: Any) -> float | None:
    """The accuracy under one LOCO key: a number (if the key names an accuracy), a dict with an accuracy
    entry, or a dict of per-corpus dicts (their mean accuracy)."""
    if (number := _number(value)) is not None and "acc" in lowered_key:
        return number
    if not isinstance(value, dict):
        return None
    for name in ("mean_accuracy", "accuracy", "clip_accuracy", "mean_clip_accuracy"):
        if (number := _number(value.get(name))) is not None:
            return number
    per_corpus = [_accuracy_of(v) for v in value.values() if isinstance(v, dict)]
    per_corpus = [v for v in per_corpus if v is not None]
    return sum(per_corpus) / len(per_corpus) if per_corpus else None


def _accuracy_of(entry: dict[str, Any]) -> float | None:
    for name in ("clip_accuracy", "accuracy", "acc"):
        if (number := _number(entry.get(name))) is not None:
            return number
    return None


def default_criterion(entries: list[ManifestEntry]) -> str:
    """'loco_accuracy' when every float model has it, else the test split's 'accuracy'."""
    floats = [e for e in entries if not e.quantized] or entries
    if all(isinstance(e.metrics.get("loco_accuracy"), (int, float)) for e in floats):
        return "loco_accuracy"
    return "accuracy"


def choose_default(entries: list[ManifestEntry]) -> str:
    """Best LOCO accuracy first (float models only; test accuracy when LOCO was not run), then the
    fastest median window time."""
    candidates = [e for e in entries if not e.quantized] or entries
    if not candidates:
        raise ValueError("no models to choose a default from")
    criterion = default_criterion(candidates)

    def key(entry: ManifestEntry):
        accuracy = entry.metrics.get(criterion)
        speed = entry.metrics.get("window_ms_median")
        accuracy = -accuracy if isinstance(accuracy, (int, float)) else math.inf
        # Accuracies are compared at 0.1-point resolution: smaller differences are noise on a test
        # set of this size, so speed decides.
        return (round(accuracy, 3), speed if isinstance(speed, (int, float)) else math.inf, entry.name)

    return min(candidates, key=key).name
