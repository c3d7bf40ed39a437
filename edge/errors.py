"""Errors the runtime raises, each with a message a user can act on."""

from __future__ import annotations


class GvdError(Exception):
    """Base class for every error gvd raises on purpose."""


class AudioError(GvdError):
    """The input could not be turned into usable audio."""


class EmptyAudioError(AudioError):
    """The file or array holds no samples."""


class CorruptAudioError(AudioError):
    """The file claims to be audio but cannot be decoded."""


class NotAudioError(AudioError):
    """The file is not an audio file at all."""


class UnsupportedFormatError(AudioError):
    """The format needs an optional extra that is not installed."""


class InvalidSamplesError(AudioError):
    """The samples contain NaN or infinite values."""


class ModelError(GvdError):
    """A model is missing, damaged, or asks for settings this runtime cannot honour."""


class MissingExtraError(GvdError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str, purpose: str):
        self.extra = extra
        self.module = module
        super().__init__(
            f"{purpose} needs the '{module}' package: pip install 'gvd[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or fail with the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(extra, module, purpose) from exc


class UnreadableFileError(AudioError):
    """The file exists but cannot be read (permissions, an I/O error)."""


class UnreadableFolderError(GvdError):
    """A folder to search for audio files cannot be listed."""


def what_is_wrong(message: str, *names: str) -> str:
    """A message without a leading '<name>: ', for output that shows the file name in its own place
    (so that a line reads '<file>: <what is wrong>' once, never '<file>: <file>: ...')."""
    for name in names:
        if name and message.startswith(f"{name}: "):
            return message[len(name) + 2:]
    return message
