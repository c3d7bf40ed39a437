"""The models a server may use: the shipped ones, the one it was started with, and promoted versions.

The default is the registry's current version when there is one, otherwise the start-up model. The
registry file is polled (at most once a second) so that ``gvd models promote|rollback`` take effect
without a restart; a request holds the detector it started with, so a swap never drops a request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GvdError, ModelError
from .errors import ApiError
from .promotion import PromotionError, Registry

log = logging.getLogger("gvd.serve")


@dataclass(frozen=True)
class ModelChoice:
    name: str
    source: str | Path  # shipped name or .onnx path: what Detector() is given
    kind: str  # "shipped" | "promoted" | "custom"
    cell: str | None
    metrics: dict[str, Any]


class ModelPool:
    def __init__(self, base: Any, threads: int = 1, registry: Registry | None = None, poll_seconds: float = 1.0):
        """``base`` is a loaded Detector (the start-up model)."""
        self.threads = threads
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.base_name = base.name
        self._detectors: dict[str, Any] = {base.name: base}
        self.used: set[str] = {base.name}  # models the workers have been asked to run (so hold in memory)
        self._base_choice = ModelChoice(base.name, base.path, "custom", getattr(base.metadata, "cell", None),
                                        _headline(getattr(base.metadata, "metrics", None)))
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._checked = 0.0
        self._choices: dict[str, ModelChoice] = {}
        self.default_name = base.name
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.poll_seconds:
            return
        self._checked = now
        stamp = self.registry.stamp() if self.registry is not None else 0
        if stamp == self._stamp and not force:
            return
        choices = {c.name: c for c in _shipped()}
        choices.setdefault(self.base_name, self._base_choice)
        default = self.base_name
        if self.registry is not None:
            try:
                for version in self.registry.versions():
                    choices[version.name] = ModelChoice(version.name, version.path, "promoted", None, {})
                current = self.registry.current()
                if current is not None:
                    default = current.name if self._loads(current.name, current.path) else self.default_name
            except PromotionError as exc:
                default = self.default_name
                log.error("model registry unreadable, keeping %s: %s", default, exc)
        with self._lock:
            self._choices, self.default_name, self._stamp = choices, default, stamp

    def _loads(self, name: str, path: Path) -> bool:
        """Load a newly promoted model here before it becomes the default: a broken file is never swapped in."""
        if name in self._detectors:
            return True
        from ..detector import Detector

        try:
            detector = Detector(path, threads=self.threads)
        except (GvdError, OSError) as exc:
            log.error("promoted model %s cannot be loaded, keeping %s: %s", name, self.default_name, exc)
            return False
        with self._lock:
            self._detectors[name] = detector
        return True

    def metadata(self, name: str):
        """The model's metadata when this process has it loaded (the start-up and promoted defaults)."""
        with self._lock:
            detector = self._detectors.get(name)
        return None if detector is None else detector.metadata

    def mark_used(self, name: str) -> None:
        with self._lock:
            self.used.add(name)

    def resolve(self, name: str | None) -> str:
        """The name to use for a request; 422 naming the allowed ones when it is not one of them."""
        self.refresh()
        if name is None or name == "":
            return self.default_name
        with self._lock:
            if name in self._choices:
                return name
            allowed = sorted(self._choices)
        raise ApiError(422, "unknown_model", f"unknown model {name!r}; choose one of: {', '.join(allowed)}",
                       allowed=allowed)

    def source(self, name: str) -> str:
        """What a worker loads for ``name``: a shipped name or an .onnx path."""
        with self._lock:
            choice = self._choices.get(name)
        if choice is None:
            raise ApiError(422, "unknown_model", f"unknown model {name!r}")
        return str(choice.source)

    def base(self):
        """The start-up model, loaded in this process (its metadata answers /health)."""
        return self._detectors[self.base_name]

    def entries(self) -> list[dict[str, Any]]:
        self.refresh()
        with self._lock:
            choices, default, used = list(self._choices.values()), self.default_name, set(self.used)
        return [{"name": c.name, "cell": c.cell, "kind": c.kind, "default": c.name == default,
                 "loaded": c.name in used, "metrics": c.metrics} for c in choices]


def _headline(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Top-level numbers only: the nested per-corpus reports stay in the model card."""
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _shipped() -> list[ModelChoice]:
    from ..model import list_models

    try:
        entries = list_models()
    except (ModelError, OSError) as exc:
        log.error("shipped models unreadable: %s", exc)
        return []
    return [ModelChoice(e["name"], e["name"], "shipped", e.get("cell"), _headline(e.get("metrics")))
            for e in entries]
