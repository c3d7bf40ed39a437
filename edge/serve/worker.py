"""What a worker runs for ``POST /predict``: module-level functions, so that worker processes can run them."""

from __future__ import annotations

from typing import Any

from ..errors import GvdError
from .duration import check_duration
from .errors import from_runtime

_DETECTORS: dict[tuple[str, int], Any] = {}  # per worker process: each model is loaded once


def detector_for(source: str, threads: int):
    detector = _DETECTORS.get((source, threads))
    if detector is None:
        from ..detector import Detector

        detector = _DETECTORS.setdefault((source, threads), Detector(source, threads=threads))
    return detector


def predict_file(source: str, threads: int, path: str, max_seconds: float) -> dict[str, Any]:
    """The audio-length check, then the prediction as plain JSON values (no server path)."""
    from pathlib import Path

    try:
        check_duration(Path(path), max_seconds)
        result = _plain(detector_for(source, threads).predict(path).to_dict())
    except GvdError as exc:  # as an ApiError, which crosses a process boundary intact
        raise from_runtime(exc) from None
    result.pop("path", None)
    return result


def ready(source: str, threads: int) -> bool:
    """Load the default model in a new worker, before the first request needs it."""
    detector_for(source, threads)
    return True


def _plain(value: Any) -> Any:
    """numpy scalars to plain JSON values (Prediction.to_dict() should already be plain)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value
