"""Errors of the export step; each says what went wrong and what to do about it."""

from __future__ import annotations

from edge.errors import GvdError


class ExportError(GvdError):
    """A model cannot be exported faithfully (unsupported layout, missing training output, ...)."""


class ParityError(ExportError):
    """The ONNX model does not reproduce the Keras model closely enough."""
