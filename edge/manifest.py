"""``manifest.json``: which models are shipped, their bytes' sha256, and the default one.

Read here by the runtime (before a shipped model loads) and written by the export step, with one
format version and one set of required keys for both sides.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError
from .files import atomic_write_text, sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

_ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "file": str, "sha256": str, "size_bytes": int, "cell": str, "quantized": bool,
    "metrics": dict, "description": str,
}


@dataclass(frozen=True)
class ManifestEntry:
    """One shipped model file."""

    name: str
    file: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    cell: str
    quantized: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: Path) -> ManifestEntry:
        if not isinstance(data, dict):
            raise ModelError(f"{source}: a model entry is not a JSON object")
        label = data.get("name", "?")
        missing = [key for key in _ENTRY_TYPES if key not in data]
        if missing:
            raise ModelError(f"{source}: model entry {label!r} lacks {', '.join(missing)}")
        unknown = sorted(set(data) - set(_ENTRY_TYPES))
        if unknown:
            raise ModelError(f"{source}: model entry {label!r} has unknown keys {', '.join(unknown)}; upgrade gvd")
        wrong = [key for key, kind in _ENTRY_TYPES.items() if not _is_a(data[key], kind)]
        if wrong:
            raise ModelError(f"{source}: model entry {label!r} has values of the wrong type for {', '.join(wrong)}")
        return cls(**data)


def _is_a(value: object, kind: type | tuple[type, ...]) -> bool:
    if kind is int and isinstance(value, bool):  # JSON true is not a size
        return False
    return isinstance(value, kind)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of one models folder."""

    default: str
    models: tuple[ManifestEntry, ...]
    path: Path  # the manifest file it was read from or written to
    format_version: int = MANIFEST_FORMAT

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.models]

    def entry(self, name: str) -> ManifestEntry | None:
        return next((entry for entry in self.models if entry.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "default": self.default,
                "models": [entry.to_dict() for entry in self.models]}


def read_manifest(path: str | Path) -> Manifest:
    """The parsed, checked manifest at ``path``; ModelError naming the file when it is not valid."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: the manifest is not a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(f"{path}: the manifest has no integer format_version")
    if version > MANIFEST_FORMAT:
        raise ModelError(f"{path}: manifest format {version} is newer than this runtime reads "
                         f"({MANIFEST_FORMAT}); upgrade gvd")
    if not isinstance(data.get("models"), list):
        raise ModelError(f"{path}: the manifest has no 'models' list")
    models = tuple(ManifestEntry.from_dict(entry, path) for entry in data["models"])
    names = [entry.name for entry in models]
    if len(set(names)) != len(names):
        raise ModelError(f"{path}: a model name is listed twice")
    default = data.get("default")
    if default not in names:
        raise ModelError(f"{path}: the default model {default!r} is not among the listed models "
                         f"({', '.join(names) or 'none'})")
    return Manifest(default=default, models=models, path=path, format_version=version)


def write_manifest(folder: str | Path, entries: list[ManifestEntry], default: str) -> Path:
    """Write ``folder/manifest.json`` atomically; the default must be one of the entries."""
    if default not in {entry.name for entry in entries}:
        raise ValueError(f"default {default!r} is not among the shipped models")
    path = Path(folder) / MANIFEST_NAME
    manifest = Manifest(default=default, models=tuple(entries), path=path)
    return atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2) + "\n")


def verify_manifest(folder: str | Path) -> list[str]:
    """Problems found (unreadable manifest, missing files, wrong size or hash); empty when all match."""
    try:
        manifest = read_manifest(Path(folder) / MANIFEST_NAME)
    except ModelError as exc:
        return [str(exc)]
    problems = []
    for entry in manifest.models:
        path = manifest.folder / entry.file
        if not path.is_file():
            problems.append(f"{entry.file}: missing")
            continue
        if path.stat().st_size != entry.size_bytes:
            problems.append(f"{entry.file}: size {path.stat().st_size} != {entry.size_bytes}")
        if sha256_file(path) != entry.sha256:
            problems.append(f"{entry.file}: sha256 mismatch")
    return problems
