"""Safe promotion: a candidate model is served only if it is not worse than the model it replaces.

Both models are run on the same fixed, speaker-disjoint held-out set (a CSV ``file,label,corpus,speaker``,
files relative to the CSV) and on the most recent stored corrections. The candidate is promoted when
its worst-corpus balanced accuracy and its accuracy on the corrections are each at least the current
model's. Every promoted model is kept as a numbered version; the registry's ``registry.json`` says
which one is current and records every promotion, refusal and rollback. A running server watches
that file and swaps models between requests (requests in flight finish on the model they started on).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GvdError
from .store import LABELS, fsync_dir, utc_now

REGISTRY_FILE = "registry.json"
PREFIX = "promoted-"


class PromotionError(GvdError):
    """The candidate, the held-out set or the registry cannot be used."""


@dataclass(frozen=True)
class LabelledClip:
    file: Path
    label: str
    corpus: str
    speaker: str = ""


@dataclass(frozen=True)
class Holdout:
    clips: tuple[LabelledClip, ...]
    sha256: str  # of the CSV: evaluations are comparable only on the same set


def load_holdout(csv_path: str | os.PathLike) -> Holdout:
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromotionError(f"cannot read the held-out set {path}: {exc}") from exc
    clips = []
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        if row.get("label") not in LABELS or not row.get("file") or not row.get("corpus"):
            raise PromotionError(f"{path.name} line {line}: needs file, label (female/male), corpus[, speaker]")
        file = (path.parent / row["file"]).resolve()
        if not file.is_file():
            raise PromotionError(f"{path.name} line {line}: {row['file']} does not exist")
        clips.append(LabelledClip(file, row["label"], row["corpus"], row.get("speaker") or ""))
    if not clips:
        raise PromotionError(f"the held-out set {path} is empty")
    return Holdout(tuple(clips), hashlib.sha256(text.encode()).hexdigest())


def check_disjoint(holdout: Holdout, candidate: Path) -> None:
    """Refuse a held-out set whose speakers the candidate was trained on (when its run says what it read)."""
    for folder in (candidate.parent, candidate.parent.parent / "train"):
        manifest = folder / "data_manifest.json"
        if manifest.is_file():
            trained = json.loads(manifest.read_text(encoding="utf-8"))
            groups = {(r.get("corpus"), r.get("speaker")) for r in trained if r.get("speaker")}
            overlap = sorted({(c.corpus, c.speaker) for c in holdout.clips if c.speaker} & groups)
            if overlap:
                raise PromotionError(f"the held-out set is not held out: the candidate was trained on "
                                     f"{len(overlap)} of its speakers, e.g. {overlap[0][0]}/{overlap[0][1]}")
            return


@dataclass(frozen=True)
class Evaluation:
    model: str
    holdout_sha256: str
    clips: int
    per_corpus: dict[str, float]  # balanced accuracy per corpus
    worst_corpus: str
    worst_balanced_accuracy: float
    corrections: int
    corrections_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def balanced_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean recall over the labels present; a no_speech answer counts as wrong."""
    recalls = []
    for label in LABELS:
        picked = [p for t, p in zip(truth, predicted, strict=True) if t == label]
        if picked:
            recalls.append(sum(p == label for p in picked) / len(picked))
    return sum(recalls) / len(recalls)


def evaluate(model: Path, holdout: Holdout, corrections: Sequence[LabelledClip], threads: int = 1) -> Evaluation:
    from ..detector import Detector

    detector = Detector(model, threads=threads)
    by_corpus: dict[str, tuple[list[str], list[str]]] = {}
    for clip in holdout.clips:
        truth, predicted = by_corpus.setdefault(clip.corpus, ([], []))
        truth.append(clip.label)
        predicted.append(detector.predict(clip.file).label)
    per_corpus = {corpus: round(balanced_accuracy(*pair), 6) for corpus, pair in sorted(by_corpus.items())}
    worst = min(per_corpus, key=per_corpus.__getitem__)
    right = [detector.predict(c.file).label == c.label for c in corrections]
    return Evaluation(detector.name, holdout.sha256, len(holdout.clips), per_corpus, worst, per_corpus[worst],
                      len(right), round(sum(right) / len(right), 6) if right else None)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    candidate: Evaluation
    baseline: Evaluation | None

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": list(self.reasons), "candidate": self.candidate.to_dict(),
                "baseline": None if self.baseline is None else self.baseline.to_dict()}


def decide(candidate: Evaluation, baseline: Evaluation | None) -> Decision:
    if baseline is None:
        return Decision(True, ("no model to compare with",), candidate, None)
    reasons = []
    if candidate.worst_balanced_accuracy < baseline.worst_balanced_accuracy:
        reasons.append(f"worse on the held-out set: worst-corpus balanced accuracy "
                       f"{candidate.worst_balanced_accuracy:.4f} < {baseline.worst_balanced_accuracy:.4f}")
    if (candidate.corrections_accuracy is not None and baseline.corrections_accuracy is not None
            and candidate.corrections_accuracy < baseline.corrections_accuracy):
        reasons.append(f"worse on the {candidate.corrections} recent corrections: accuracy "
                       f"{candidate.corrections_accuracy:.4f} < {baseline.corrections_accuracy:.4f}")
    if reasons:
        return Decision(False, tuple(reasons), candidate, baseline)
    return Decision(True, ("not worse on the held-out set nor on the corrections",), candidate, baseline)


@dataclass(frozen=True)
class Version:
    number: int
    path: Path  # versions/<n>/promoted-<n>.onnx

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.number}"


@dataclass
class RegistryState:
    current: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class Registry:
    """Numbered versions of promoted models and which one is current (atomic, locked updates)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / REGISTRY_FILE

    @contextmanager
    def _locked(self) -> Iterator[RegistryState]:
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            state = self.read()
            yield state
            self._write(state)

    def read(self) -> RegistryState:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return RegistryState()
        except json.JSONDecodeError as exc:
            raise PromotionError(f"{self.path} is damaged: {exc}") from exc
        return RegistryState(data.get("current"), list(data.get("events", [])))

    def _write(self, state: RegistryState) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"current": state.current, "events": state.events}, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.root)

    def stamp(self) -> int:
        """Changes whenever the registry does (the server polls it to hot-swap)."""
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def versions(self) -> list[Version]:
        found = []
        for folder in (self.root / "versions").glob("*"):
            if folder.name.isdigit() and (folder / f"{PREFIX}{int(folder.name)}.onnx").is_file():
                found.append(Version(int(folder.name), folder / f"{PREFIX}{int(folder.name)}.onnx"))
        return sorted(found, key=lambda v: v.number)

    def version(self, number: int) -> Version:
        for version in self.versions():
            if version.number == number:
                return version
        raise PromotionError(f"no promoted version {number}")

    def current(self) -> Version | None:
        number = self.read().current
        return None if number is None else self.version(number)

    def record(self, decision: Decision, candidate: Path, source: str) -> Version | None:
        """Keep a promoted candidate as the next version and make it current; log a refusal too."""
        with self._locked() as state:
            event = {"time": utc_now(), "source": source, **decision.to_dict()}
            if not decision.promote:
                state.events.append({"action": "refused", **event})
                return None
            number = max([v.number for v in self.versions()] + [0]) + 1
            folder = self.root / "versions" / str(number)
            folder.mkdir(parents=True)
            target = folder / f"{PREFIX}{number}.onnx"
            shutil.copyfile(candidate, target)
            with open(target, "rb+") as handle:
                os.fsync(handle.fileno())
            fsync_dir(folder)
            state.events.append({"action": "promoted", "version": number, "previous": state.current, **event})
            state.current = number
            return Version(number, target)

    def rollback(self) -> int | None:
        """Back to the version that was current before the current one (None: the shipped model)."""
        with self._locked() as state:
            if state.current is None:
                raise PromotionError("nothing to roll back: the shipped model is being served")
            promoted = [e for e in state.events if e.get("action") == "promoted" and e.get("version") == state.current]
            previous = promoted[-1].get("previous") if promoted else None
            state.events.append({"action": "rollback", "time": utc_now(), "from": state.current, "to": previous})
            state.current = previous
            return previous

    def history(self) -> list[dict[str, Any]]:
        return self.read().events


def promote(candidate: Path, registry: Registry, holdout: Holdout, baseline: Path | None,
            corrections: Sequence[LabelledClip], source: str, threads: int = 1) -> tuple[Decision, Version | None]:
    """Evaluate ``candidate`` against ``baseline`` (current version or shipped default) and record the outcome."""
    if not candidate.is_file():
        raise PromotionError(f"no candidate model at {candidate}")
    check_disjoint(holdout, candidate)
    current = registry.current()
    base = current.path if current is not None else baseline
    decision = decide(evaluate(candidate, holdout, corrections, threads),
                      None if base is None else evaluate(base, holdout, corrections, threads))
    return decision, registry.record(decision, candidate, source)
