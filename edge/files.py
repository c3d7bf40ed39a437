"""File helpers shared by the runtime, training and export: hashing, atomic writes, finding audio.

Each is defined once here so that every side hashes, writes and lists files the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection
from importlib import import_module
from pathlib import Path
from typing import BinaryIO

_HASH_BLOCK = 1 << 20


def _sha256():
    # hashlib loads OpenSSL's libcrypto (3 MB of resident memory, measured); CPython's built-in
    # SHA-256 gives the same digest and is fast enough for a model file of a few hundred kB.
    for builtin in ("_sha2", "_sha256"):  # Python >= 3.12, then 3.10 and 3.11
        try:
            return import_module(builtin).sha256()
        except ImportError:
            continue
    import hashlib  # an interpreter without the built-in module

    return hashlib.sha256()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in blocks (memory stays bounded for any size)."""
    digest = _sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file so that readers see the old content or the whole new one, never a part.

    ``write`` fills a temporary file in the same folder; it is flushed to disk, renamed over
    ``path`` and the folder entry is synced too, so a crash or power cut cannot leave a torn file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # folders cannot be opened for syncing elsewhere
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_audio_files(root: str | os.PathLike[str], extensions: Collection[str] | None = None) -> list[Path]:
    """Every audio file under ``root`` (recursively), sorted; ``root`` itself when it is a file.

    ``extensions`` are lower-case suffixes with the dot (default: every format the decoder reads).
    A sub-folder that cannot be read raises its OSError instead of being skipped in silence.
    """
    if extensions is None:
        from .audio import AUDIO_EXTENSIONS

        extensions = AUDIO_EXTENSIONS
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(2, "no such file or folder", str(root))
    found = []
    for folder, _, names in os.walk(root, onerror=_raise):
        found += [Path(folder) / name for name in names if Path(name).suffix.lower() in extensions]
    return sorted(path for path in found if path.is_file())


def _raise(error: OSError) -> None:
    raise error
