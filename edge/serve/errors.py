"""Every error the server answers with: ``{"error": <machine word>, "message": <human sentence>}``.

Errors raised on purpose carry their HTTP status and machine word; the runtime's own errors
(bad audio, a missing extra, a broken model) are mapped here, so the API, the command line and the
page all show the runtime's message.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import AudioError, GvdError, MissingExtraError, ModelError, UnsupportedFormatError

log = logging.getLogger("gvd.serve")


class ApiError(Exception):
    """An answer other than 2xx, with its status, machine word and optional headers or extra fields."""

    def __init__(self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}

    def __reduce__(self):
        # Raised in worker processes too: rebuild from every field, not from the message alone.
        return (_rebuild, (self.status, self.error, self.message, self.headers, self.extra))


def _rebuild(status: int, error: str, message: str, headers: dict[str, str], extra: dict[str, Any]) -> ApiError:
    return ApiError(status, error, message, headers=headers, **extra)


def machine_word(exc: BaseException) -> str:
    """CorruptAudioError -> corrupt_audio: a stable machine word from an exception class."""
    name = type(exc).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def from_runtime(exc: GvdError) -> ApiError:
    """The runtime's error as an answer; the order matters (subclasses first)."""
    if isinstance(exc, ModelError):  # its message names files on the server: log it, answer without it
        log.error("model error: %s", exc)
        return ApiError(500, "model_error", "the model could not be used; the server log says why")
    for kind, status in ((UnsupportedFormatError, 415), (MissingExtraError, 415), (AudioError, 422)):
        if isinstance(exc, kind):
            return ApiError(status, machine_word(exc), str(exc))
    return ApiError(422, machine_word(exc), str(exc))


def status_word(status: int) -> str:
    """Machine word for the framework's own errors (unknown route, wrong method)."""
    return {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(status, f"http_{status}")
