"""Receiving one audio file per request, streamed to disk: multipart (field ``file``) or a raw body.

The body is never held in memory; the file part is refused with 413 as soon as it passes the limit
(the request's total size is also capped by :class:`~edge.serve.security.GuardMiddleware`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import audio
from ..errors import MissingExtraError, require
from .errors import ApiError

MB = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart headers, boundaries and small fields on top of the file itself
MAX_FIELD_BYTES = 1024
_SUFFIX_PATTERN = re.compile(r"^\.[a-z0-9]{1,8}$")
# MediaRecorder and curl name their uploads by type; map the type when the file name has no extension.
TYPE_SUFFIX = {
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/ogg": ".ogg", "audio/opus": ".opus",
    "audio/webm": ".webm", "video/webm": ".webm", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "audio/aac": ".aac", "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "video/mp4": ".mp4",
}


def safe_suffix(filename: str | None, default: str = ".bin") -> str:
    """The lower-case extension of an uploaded file name, or ``default`` when it is missing or odd."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if _SUFFIX_PATTERN.match(suffix) else default


def sniff_suffix(path: Path) -> str | None:
    """The extension of a container recognised by its first bytes (for uploads without a usable name)."""
    with open(path, "rb") as handle:
        return audio.sniff_suffix(handle.read(audio.SNIFF_BYTES))


@dataclass
class Upload:
    path: Path  # the received file, in the incoming folder
    filename: str  # as the client named it (shown in messages, never used as a path)
    suffix: str


def too_large(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large", f"the upload passed the {limit / MB:g} MB limit",
                    headers={"Connection": "close"}, limit_mb=round(limit / MB, 3))


def no_file() -> ApiError:
    return ApiError(400, "no_file", "no audio file in the request: send it in a multipart field named 'file'")


def _multipart():
    try:
        return require("python_multipart.multipart", "serve", "gvd serve")
    except MissingExtraError:  # python-multipart < 0.0.13 installs itself as 'multipart'
        return require("multipart.multipart", "serve", "gvd serve")


class _FilePartWriter:
    """python-multipart callbacks that write the one ``file`` part to disk and ignore nothing else."""

    def __init__(self, new_path: Callable[[str], Path], limit: int):
        self.new_path = new_path
        self.limit = limit
        self.size = 0
        self.upload: Upload | None = None
        self._out: BinaryIO | None = None
        self._in_file = False
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._headers, self._in_file = {}, False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = _multipart().parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != b"file":
            return  # other fields are not part of the API: their bytes are counted, not kept
        if self.upload is not None:
            raise ApiError(400, "one_file_only", "send one audio file per request")
        filename = options.get(b"filename", b"").decode("utf-8", "replace")
        part_type = self._headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        suffix = safe_suffix(filename, TYPE_SUFFIX.get(part_type, ".bin"))
        self.upload = Upload(self.new_path(suffix), filename, suffix)
        self._out = open(self.upload.path, "wb")
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file or self._out is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise too_large(self.limit)
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        if self._in_file and self._out is not None:
            self._out.close()
        self._in_file = False

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        if self.upload is not None:
            self.upload.path.unlink(missing_ok=True)


async def receive_upload(request, limit: int, new_path: Callable[[str], Path]) -> Upload:
    """Stream the request's audio to ``new_path(suffix)``; multipart ``file`` or an audio/* body."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _receive_multipart(request, content_type, limit, new_path)
    if media_type.startswith(("audio/", "video/")) or media_type == "application/octet-stream":
        filename = request.query_params.get("filename") or "upload"
        upload = Upload(new_path(safe_suffix(filename, TYPE_SUFFIX.get(media_type, ".bin"))), filename, "")
        upload.suffix = upload.path.suffix
        size = 0
        try:
            with open(upload.path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    out.write(chunk)
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        return upload
    raise ApiError(415, "unsupported_media_type",
                   f"send the audio as multipart/form-data (a 'file' field) or as an audio/* body, "
                   f"not {media_type or 'no content type'!r}")


async def _receive_multipart(request, content_type: str, limit: int, new_path: Callable[[str], Path]) -> Upload:
    multipart = _multipart()
    _, params = multipart.parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_body", "the multipart body has no boundary")
    writer = _FilePartWriter(new_path, limit)
    try:
        parser = multipart.MultipartParser(boundary, writer.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        writer.discard()
        raise
    except Exception as exc:
        writer.discard()
        if exc.__class__.__name__ == "ClientDisconnect":
            raise
        raise ApiError(400, "malformed_body", f"malformed multipart body: {exc}") from exc
    except BaseException:
        writer.discard()
        raise
    if writer.upload is None:
        raise no_file()
    return writer.upload
