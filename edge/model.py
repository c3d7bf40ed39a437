"""Finding shipped models, checking them against the manifest, and opening onnxruntime sessions.

Shipped models live in ``edge/_models`` inside an installed wheel, or in the repository's ``models/``
folder next to the ``edge`` package for an editable install (``GVD_MODELS_DIR`` overrides both, and
must then name a folder with a manifest). A shipped model is verified against ``manifest.json``
(sha256) before it is loaded, so a corrupted or swapped file is refused instead of silently giving
wrong answers. Every model's graph is checked against the I/O contract in :mod:`edge.metadata` when
it loads, so a model that could only fail on every file is refused once, with the reason.

Sessions are tuned for small CPUs: one intra-op and one inter-op thread by default, no spin-waiting
(a spinning thread burns a whole core on a Raspberry Pi between windows), no growing memory arena,
and every graph optimisation. A model is loaded once per process: sessions are cached by
(path, threads).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .files import sha256_file
from .manifest import MANIFEST_NAME, Manifest, ManifestEntry, read_manifest
from .metadata import INPUT_NAME, OUTPUT_NAME, SPEECH_OUTPUT_NAME, ModelMetadata
from .settings import FeatureSettings

ENV_MODELS_DIR = "GVD_MODELS_DIR"
_FLOAT32 = "tensor(float)"


@dataclass(frozen=True)
class SessionOptions:
    """How an onnxruntime session is configured; the defaults suit a small, shared CPU."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    cpu_mem_arena: bool = False
    # A memory pattern is cached per input shape, and the time axis is dynamic: 990 window lengths
    # grew a session by 15 MB with it, 3 MB without (measured), at no measurable inference cost.
    mem_pattern: bool = False


@dataclass(frozen=True)
class ModelRef:
    """A model file and, for a shipped model, its manifest entry and the manifest it came from."""

    name: str
    path: Path
    entry: ManifestEntry | None = None  # None for a user-supplied .onnx path
    manifest_path: Path | None = None


@dataclass
class LoadedModel:
    """An open session with the settings and names read from the model itself."""

    ref: ModelRef
    session: Any  # onnxruntime.InferenceSession
    metadata: ModelMetadata
    input_name: str
    output_name: str
    speech_output_name: str | None = None  # "p_speech" when the model has a speech output

    @property
    def settings(self) -> FeatureSettings:
        return self.metadata.feature_settings


def _env_models_dir() -> Path | None:
    """The folder named by GVD_MODELS_DIR; ModelError when it is set but holds no manifest."""
    value = os.environ.get(ENV_MODELS_DIR)
    if not value:
        return None
    folder = Path(value)
    if not folder.is_dir():
        raise ModelError(f"{ENV_MODELS_DIR}={value}: no such folder; point it to a models folder or unset it")
    if not (folder / MANIFEST_NAME).is_file():
        raise ModelError(f"{ENV_MODELS_DIR}={value}: the folder has no {MANIFEST_NAME} (write one with "
                         "'gvd export --train-dir DIR --out FOLDER'), or unset it")
    return folder


def candidate_dirs() -> list[Path]:
    """Where shipped models are looked for, in order."""
    dirs = []
    env = _env_models_dir()
    if env is not None:
        dirs.append(env)
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


def load_manifest(folder: Path | None = None) -> Manifest:
    """The parsed, checked manifest; ModelError when it is missing or malformed."""
    folder = folder or models_dir()
    if folder is None:
        looked = ", ".join(str(d) for d in candidate_dirs())
        raise ModelError(f"no shipped models found (looked for {MANIFEST_NAME} in: {looked}); "
                         "pass the path of an .onnx model instead")
    return read_manifest(folder / MANIFEST_NAME)


def list_models() -> list[dict[str, Any]]:
    """Manifest entries of the shipped models (plus 'default' and 'path'); empty when none are installed."""
    folder = models_dir()
    if folder is None:
        return []
    manifest = load_manifest(folder)
    return [
        {**entry.to_dict(), "default": entry.name == manifest.default, "path": str(folder / entry.file)}
        for entry in manifest.models
    ]


def _user_file(model: str | os.PathLike[str]) -> ModelRef | None:
    """A ModelRef for an explicit file path, None for a shipped model's name."""
    text = os.fspath(model)
    candidate = Path(text)
    if candidate.is_dir():
        raise ModelError(f"{candidate}: is a folder, not a model file; pass an .onnx file or a shipped model's name")
    if candidate.suffix.lower() == ".onnx" or os.sep in text or candidate.is_file():
        if not candidate.is_file():
            raise ModelError(f"{candidate}: no such model file")
        return ModelRef(candidate.stem, candidate.resolve())
    return None


def resolve(model: str | os.PathLike[str] | None) -> ModelRef:
    """A shipped name (or None for the default) or an .onnx path to a :class:`ModelRef`."""
    if model is not None and (ref := _user_file(model)) is not None:
        return ref
    manifest = load_manifest()
    name = os.fspath(model) if model is not None else manifest.default
    entry = manifest.entry(name)
    if entry is None:
        raise ModelError(f"unknown model {name!r}; shipped models: {', '.join(manifest.names) or 'none'} "
                         "(or pass the path of an .onnx file)")
    path = manifest.folder / entry.file
    if not path.is_file():
        raise ModelError(f"model {name!r}: {path} is listed in {manifest.path} but missing; reinstall gvd")
    return ModelRef(name, path.resolve(), entry, manifest.path)


def verify(ref: ModelRef) -> None:
    """Refuse a shipped model whose bytes differ from its manifest."""
    if ref.entry is None:
        return
    actual = sha256_file(ref.path)
    expected = ref.entry.sha256.lower()
    if actual != expected:
        raise ModelError(
            f"model {ref.name!r} ({ref.path}) does not match {ref.manifest_path}: sha256 {actual[:12]}... "
            f"instead of {expected[:12]}...; the file is corrupted or was replaced, reinstall gvd"
        )


def session_options(options: SessionOptions):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = options.cpu_mem_arena
    so.enable_mem_pattern = options.mem_pattern
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
    try:
        metadata = ModelMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map))
    except ModelError as exc:
        raise ModelError(f"{ref.path}: {exc}") from exc
    check_graph(ref.path, session.get_inputs(), session.get_outputs(), metadata)
    speech = SPEECH_OUTPUT_NAME if metadata.has_speech_output else None
    return LoadedModel(ref, session, metadata, INPUT_NAME, OUTPUT_NAME, speech)


def check_graph(path: Path, inputs: list[Any], outputs: list[Any], metadata: ModelMetadata) -> None:
    """Refuse a graph that breaks the model I/O contract, before any audio reaches it.

    ``inputs`` and ``outputs`` are onnxruntime NodeArgs (``name``, ``type``, ``shape``).
    """
    _check_input(path, inputs, metadata.feature_settings.n_features)
    found = {o.name: o for o in outputs}
    expected = list(metadata.outputs)
    if sorted(found) != sorted(expected):
        raise ModelError(f"{path}: the graph's outputs are {sorted(found)}, its metadata promises {expected}; "
                         f"gvd models output {OUTPUT_NAME!r} [batch, 1] and, when the metadata says so, "
                         f"{SPEECH_OUTPUT_NAME!r} [batch, 1]")
    for name in expected:
        _check_probability_output(path, found[name])


def _check_input(path: Path, inputs: list[Any], n_features: int) -> None:
    names = [i.name for i in inputs]
    if names != [INPUT_NAME]:
        raise ModelError(f"{path}: the graph's inputs are {names}; gvd models take one input {INPUT_NAME!r}")
    node = inputs[0]
    wanted = f"float32 [batch, time, {n_features}] with batch and time dynamic"
    if node.type != _FLOAT32:
        raise ModelError(f"{path}: input {INPUT_NAME!r} is {node.type}, not {wanted}; re-export it with float32 input")
    shape = list(node.shape or [])
    if len(shape) != 3:
        raise ModelError(f"{path}: input {INPUT_NAME!r} has shape {shape}, not {wanted}")
    if isinstance(shape[0], int) or isinstance(shape[1], int):
        raise ModelError(f"{path}: input {INPUT_NAME!r} has a fixed batch or time dimension {shape}, so it cannot "
                         f"take windows of every length; gvd models take {wanted}")
    if shape[2] != n_features:
        raise ModelError(f"{path}: input {INPUT_NAME!r} has {shape[2]} features per frame, its feature settings "
                         f"give {n_features}; the graph and its metadata do not belong together")


def _check_probability_output(path: Path, node: Any) -> None:
    shape = list(node.shape or [])
    if node.type != _FLOAT32 or len(shape) != 2 or isinstance(shape[0], int) or shape[1] != 1:
        raise ModelError(f"{path}: output {node.name!r} is {node.type} {shape}; gvd models output one float32 "
                         f"probability per window, [batch, 1]")


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
