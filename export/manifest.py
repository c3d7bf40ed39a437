"""models/manifest.json (contract 2 of COMMON.md): what is shipped, its hash, and the default."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    file: str
    sha256: str
    size_bytes: int
    cell: str
    quantized: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def loco_accuracy(metrics: dict[str, Any]) -> float | None:
    """Leave-one-corpus-out clip accuracy from training metrics, whatever nesting training chose.

    Looks for a key mentioning 'loco' / 'leave_one': a number, a dict with an accuracy entry, or a
    dict of per-corpus dicts (their mean accuracy).
    """
    for key, value in metrics.items():
        lowered = key.lower()
        if "loco" not in lowered and "leave_one" not in lowered:
            continue
        if (number := _number(value)) is not None and "acc" in lowered:
            return number
        if isinstance(value, dict):
            for name in ("mean_accuracy", "accuracy", "clip_accuracy", "mean_clip_accuracy"):
                if (number := _number(value.get(name))) is not None:
                    return number
            per_corpus = [_accuracy_of(v) for v in value.values() if isinstance(v, dict)]
            per_corpus = [v for v in per_corpus if v is not None]
            if per_corpus:
                return sum(per_corpus) / len(per_corpus)
    for value in metrics.values():  # one level down, e.g. metrics["clip"]["loco"]
        if isinstance(value, dict) and (found := loco_accuracy(value)) is not None:
            return found
    return None


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


def write_manifest(directory: str | Path, entries: list[ManifestEntry], default: str) -> Path:
    if default not in {e.name for e in entries}:
        raise ValueError(f"default {default!r} is not among the shipped models")
    path = Path(directory) / MANIFEST_NAME
    payload = {"format_version": FORMAT_VERSION, "default": default, "models": [e.to_dict() for e in entries]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def verify_manifest(directory: str | Path) -> list[str]:
    """Problems found (missing files, wrong size or hash); empty when everything matches."""
    directory = Path(directory)
    data = json.loads((directory / MANIFEST_NAME).read_text())
    problems = []
    for entry in data.get("models", []):
        path = directory / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
            continue
        if path.stat().st_size != entry["size_bytes"]:
            problems.append(f"{entry['file']}: size {path.stat().st_size} != {entry['size_bytes']}")
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 mismatch")
    if data.get("default") not in {e["name"] for e in data.get("models", [])}:
        problems.append(f"default {data.get('default')!r} is not a listed model")
    return problems
