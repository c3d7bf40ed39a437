"""Finding shipped models, checking them against the manifest, and opening onnxruntime sessions.

Shipped models live in ``edge/_models`` inside an installed wheel, or in the repository's ``models/``
folder next to the ``edge`` package for an editable install (``GVD_MODELS_DIR`` overrides both).
A shipped model is verified against ``manifest.json`` (sha256) before it is loaded, so a corrupted
or swapped file is refused instead of silently giving wrong answers.

Sessions are tuned for small CPUs: one intra-op and one inter-op thread by default, no spin-waiting
(a spinning thread burns a whole core on a Raspberry Pi between windows), no growing memory arena,
and every graph optimisation. A model is loaded once per process: sessions are cached by
(path, threads).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from .settings import FeatureSettings

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
ENV_MODELS_DIR = "GVD_MODELS_DIR"


@dataclass(frozen=True)
class SessionOptions:
    """How an onnxruntime session is configured; the defaults suit a small, shared CPU."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    cpu_mem_arena: bool = False


@dataclass(frozen=True)
class ModelRef:
    """A model file and, for a shipped model, its manifest entry."""

    name: str
    path: Path
    entry: dict[str, Any] | None  # None for a user-supplied .onnx path


@dataclass
class LoadedModel:
    """An open session with the settings and names read from the model itself."""

    ref: ModelRef
    session: Any  # onnxruntime.InferenceSession
    metadata: ModelMetadata
    input_name: str
    output_name: str

    @property
    def settings(self) -> FeatureSettings:
        return self.metadata.feature_settings


def candidate_dirs() -> list[Path]:
    """Where shipped models are looked for, in order."""
    dirs = []
    if os.environ.get(ENV_MODELS_DIR):
        dirs.append(Path(os.environ[ENV_MODELS_DIR]))
    package = Path(__file__).resolve().parent
    dirs.append(package / "_models")  # inside an installed wheel
    dirs.append(package.parent / "models")  # editable install / source checkout
    return dirs


def models_dir() -> Path | None:
    """The first folder that holds a manifest, or None when no shipped models are installed."""
    for folder in candidate_dirs():
        if (folder / MANIFEST_NAME).is_file():
            return folder
    return None


def load_manifest(folder: Path | None = None) -> dict[str, Any]:
    """The parsed, checked manifest; ModelError when it is missing or malformed."""
    folder = folder or models_dir()
    if folder is None:
        looked = ", ".join(str(d) for d in candidate_dirs())
        raise ModelError(f"no shipped models found (looked for {MANIFEST_NAME} in: {looked}); "
                         "pass the path of an .onnx model instead")
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model manifest ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise ModelError(f"{path}: the manifest has no 'models' list")
    if int(manifest.get("format_version", 0)) > MANIFEST_FORMAT:
        raise ModelError(f"{path}: manifest format {manifest['format_version']} is newer than this "
                         f"runtime reads ({MANIFEST_FORMAT}); upgrade gvd")
    for entry in manifest["models"]:
        missing = [k for k in ("name", "file", "sha256") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ModelError(f"{path}: a model entry lacks {', '.join(missing)}")
    return manifest


def list_models() -> list[dict[str, Any]]:
    """Manifest entries of the shipped models (plus 'default' and 'path'); empty when none are installed."""
    folder = models_dir()
    if folder is None:
        return []
    manifest = load_manifest(folder)
    default = manifest.get("default")
    return [
        {**entry, "default": entry["name"] == default, "path": str(folder / entry["file"])}
        for entry in manifest["models"]
    ]


def resolve(model: str | os.PathLike | None) -> ModelRef:
    """A shipped name (or None for the default) or an .onnx path to a :class:`ModelRef`."""
    if model is not None:
        text = os.fspath(model)
        candidate = Path(text)
        if candidate.suffix.lower() == ".onnx" or os.sep in text or candidate.is_file():
            if candidate.is_dir():
                raise ModelError(f"{candidate}: is a directory, not a model file (.onnx)")
            if not candidate.is_file():
                raise ModelError(f"{candidate}: no such model file")
            return ModelRef(candidate.stem, candidate.resolve(), None)
    folder = models_dir()
    manifest = load_manifest(folder)
    assert folder is not None
    name = model if model is not None else manifest.get("default")
    if name is None:
        raise ModelError(f"{folder / MANIFEST_NAME}: no default model; choose one by name")
    entries = {entry["name"]: entry for entry in manifest["models"]}
    if name not in entries:
        if Path(name).is_dir():
            raise ModelError(f"{name}: is a directory, not a model file (.onnx)")
        raise ModelError(f"unknown model {name!r}; shipped models: {', '.join(entries) or 'none'} "
                         "(or pass the path of an .onnx file)")
    entry = entries[name]
    path = folder / entry["file"]
    if not path.is_file():
        raise ModelError(f"model {name!r}: {path} is listed in the manifest but missing; reinstall gvd")
    return ModelRef(name, path.resolve(), entry)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(ref: ModelRef) -> None:
    """Refuse a shipped model whose bytes differ from the manifest."""
    if ref.entry is None:
        return
    actual = sha256_file(ref.path)
    expected = str(ref.entry["sha256"]).lower()
    if actual != expected:
        raise ModelError(
            f"model {ref.name!r} ({ref.path}) does not match models/manifest.json: sha256 {actual[:12]}... "
            f"instead of {expected[:12]}...; the file is corrupted or was replaced, reinstall gvd"
        )
    size = ref.entry.get("size_bytes")
    if size is not None and int(size) != ref.path.stat().st_size:  # pragma: no cover - sha catches it first
        raise ModelError(f"model {ref.name!r}: size differs from the manifest")


def session_options(options: SessionOptions):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = options.cpu_mem_arena
    spin = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.log_severity_level = 3  # warnings about unused initialisers are noise for users
    return so


_CACHE: dict[tuple[str, str, int, int], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def _open(ref: ModelRef, options: SessionOptions) -> LoadedModel:
    import onnxruntime as ort

    verify(ref)
    try:
        session = ort.InferenceSession(str(ref.path), sess_options=session_options(options),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for damaged graphs
        raise ModelError(f"{ref.path}: onnxruntime cannot load this model ({exc})") from exc
    metadata = ModelMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map))
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise ModelError(f"{ref.path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found "
                         f"inputs {sorted(inputs)} and outputs {sorted(outputs)}")
    shape = inputs[INPUT_NAME].shape
    n_mfcc = metadata.feature_settings.n_mfcc
    if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != n_mfcc):
        raise ModelError(f"{ref.path}: input shape {shape} does not match [batch, time, {n_mfcc}]")
    return LoadedModel(ref, session, metadata, INPUT_NAME, OUTPUT_NAME)


def load(model: str | os.PathLike | None = None, threads: int = 1, inter_threads: int = 1) -> LoadedModel:
    """Resolve, verify and open a model, once per (path, threads) in this process."""
    if threads < 1 or inter_threads < 1:
        raise ValueError("thread counts must be at least 1")
    ref = resolve(model)
    key = (str(ref.path), ref.name, threads, inter_threads)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = _open(ref, SessionOptions(intra_op_threads=threads, inter_op_threads=inter_threads))
            _CACHE[key] = loaded
    return loaded


def clear_cache() -> None:
    """Forget open sessions (tests, or after replacing model files)."""
    with _CACHE_LOCK:
        _CACHE.clear()
