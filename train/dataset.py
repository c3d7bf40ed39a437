"""Model inputs for every recording, through the runtime's own pipeline, cached on disk.

Each recording yields variant 0 (the clean file, windowed exactly as the runtime windows it: the
clip-level evaluation uses these) and, for training, ``augment.variants`` augmented copies (a
random channel each, non-overlapping windows). Every window goes through
:func:`edge.pipeline.window_inputs`, so VAD, cleaning, MFCC and normalisation are the runtime's.

Cache entries are keyed by a hash of the feature settings, the augmentation parameters, the
variant, the seed, the file's content and the feature code itself (its syntax tree: comments and
docstrings do not count), so a second run with the same settings skips decoding and extraction
altogether, and a change in any of them can never serve stale features.
"""

from __future__ import annotations

import ast
import hashlib
import json
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge.settings import FeatureSettings

from .augment import AugmentConfig, augment
from .data import Recording

CACHE_VERSION = 2
ENVELOPE_SECONDS = 0.05


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gvd" / "features"


@dataclass
class Windows:
    """A flat list of model inputs with where each came from."""

    features: list[np.ndarray] = field(default_factory=list)  # (frames, n_features) float32 each
    speech: list[float] = field(default_factory=list)  # seconds of speech in the window
    recording: list[int] = field(default_factory=list)  # index into the recording list
    variant: list[int] = field(default_factory=list)  # 0 = clean

    def __len__(self) -> int:
        return len(self.features)

    def select(self, mask: np.ndarray) -> Windows:
        idx = np.flatnonzero(mask)
        return Windows([self.features[i] for i in idx], [self.speech[i] for i in idx],
                       [self.recording[i] for i in idx], [self.variant[i] for i in idx])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([f.shape[0] for f in self.features], dtype=np.int64)


def code_fingerprint(source: str) -> str:
    """Hash of what a module's code does: its syntax tree without docstrings (comments and layout are
    not in the tree), so that rewording a comment does not throw away hours of cached features."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


@lru_cache(maxsize=1)
def pipeline_fingerprint() -> str:
    """Hash of the runtime feature code (and of the augmentation code): when either changes,
    every cached feature is recomputed instead of silently disagreeing with the runtime."""
    import edge.audio
    import edge.clean
    import edge.features
    import edge.pipeline
    import edge.settings
    import edge.vad

    from . import augment as augment_module

    digest = hashlib.sha256()
    for module in (edge.audio, edge.clean, edge.features, edge.pipeline, edge.vad, edge.settings, augment_module):
        digest.update(code_fingerprint(Path(module.__file__).read_text(encoding="utf-8")).encode())
    return digest.hexdigest()


def cache_key(sha256: str, settings: FeatureSettings, augment_config: AugmentConfig | None, variant: int,
              seed: int) -> str:
    payload = {
        "v": CACHE_VERSION,
        "code": pipeline_fingerprint(),
        "file": sha256,
        "settings": settings.to_dict(),
        "variant": variant,
        # The clean variant does not depend on augmentation or seed: share it between runs.
        "augment": augment_config.to_dict() if variant else None,
        "seed": seed if variant else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npz"


def _write_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write to a temporary file and rename: a crash can never leave a half-written cache entry.

    Unlike :func:`edge.files.atomic_write` there is no fsync: an entry lost in a power cut fails to
    load and is recomputed, and syncing tens of thousands of entries would cost more than that.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _pack(windows, envelope: np.ndarray, n_features: int) -> dict[str, np.ndarray]:
    kept = [w for w in windows if w.features is not None]
    return {
        "features": (np.concatenate([w.features for w in kept]) if kept else np.zeros((0, n_features), np.float32)),
        "lengths": np.array([w.features.shape[0] for w in kept], dtype=np.int64),
        "speech": np.array([w.speech_seconds for w in kept], dtype=np.float64),
        "envelope": envelope.astype(np.float32),
    }


def _unpack(data) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    lengths = data["lengths"]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    feats = data["features"]
    return ([np.array(feats[bounds[i] : bounds[i + 1]]) for i in range(len(lengths))],
            [float(s) for s in data["speech"]], np.array(data["envelope"]))


def loudness_envelope(y: np.ndarray, rate: int) -> np.ndarray:
    """Log energy per 50 ms: a cheap fingerprint to find the same recording stored in two formats."""
    frame = int(ENVELOPE_SECONDS * rate)
    n = len(y) // frame
    if n == 0:
        return np.zeros(0, np.float32)
    frames = np.asarray(y[: n * frame], dtype=np.float64).reshape(n, frame)
    return (10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)).astype(np.float32)


def _extract_one(task: tuple) -> tuple[int, dict[int, dict[str, np.ndarray]], str | None]:
    """Decode once, compute every missing variant, write each to the cache. Runs in a worker."""
    from edge.audio import load_audio
    from edge.errors import AudioError
    from edge.pipeline import window_inputs

    index, path, sha, settings_json, augment_dict, variants, seed, cache_dir = task
    settings = FeatureSettings.from_json(settings_json)
    augment_config = AugmentConfig.from_dict(augment_dict)
    try:
        y, _ = load_audio(path, settings.sample_rate)
    except (AudioError, OSError) as exc:
        return index, {}, f"{path}: {exc}"
    out = {}
    envelope = loudness_envelope(y, settings.sample_rate)
    for variant in variants:
        if variant == 0:
            windows = window_inputs(y, settings)
        else:
            digest = int(hashlib.sha256(f"{seed}:{sha}:{variant}".encode()).hexdigest()[:16], 16)
            rng = np.random.default_rng(digest)
            # Augmented copies: non-overlapping windows (fewer, still every second of speech once).
            windows = window_inputs(augment(y, settings.sample_rate, rng, augment_config), settings,
                                    step_frames=settings.window_frames)
        packed = _pack(windows, envelope, settings.n_features)
        key = cache_key(sha, settings, augment_config, variant, seed)
        _write_atomic(_cache_path(Path(cache_dir), key), **packed)
        out[variant] = packed
    return index, out, None


@dataclass
class ExtractResult:
    windows: Windows
    envelopes: dict[int, np.ndarray]
    failed: list[str]
    cache_hits: int
    computed: int


def extract(
    recordings: Sequence[Recording],
    settings: FeatureSettings,
    augment_config: AugmentConfig | None = None,
    variants: int = 0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> ExtractResult:
    """Windows of variant 0..``variants`` for every recording, from the cache or freshly computed.

    Recordings that cannot be decoded are reported in ``failed`` and left out, never guessed.
    """
    augment_config = augment_config or AugmentConfig()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    collected = _Collected()
    tasks = []
    for index, rec in enumerate(recordings):
        if not rec.sha256:
            raise ValueError(f"{rec.path}: recording without content hash; load it through train.data")
        missing = []
        for variant in range(variants + 1):
            key = cache_key(rec.sha256, settings, augment_config, variant, seed)
            if not collected.read_cache(index, variant, _cache_path(cache_dir, key)):
                missing.append(variant)
        if missing:
            tasks.append((index, str(rec.path), rec.sha256, settings.to_json(), augment_config.to_dict(), missing,
                          seed, str(cache_dir)))
    if tasks:
        _compute(tasks, collected, workers, progress)
    return ExtractResult(collected.windows(), collected.envelopes, collected.failed, collected.cache_hits, len(tasks))


@dataclass
class _Collected:
    """The windows of each recording and variant, and each recording's envelope, as they are read or computed."""

    per_rec: dict[int, dict[int, tuple[list[np.ndarray], list[float]]]] = field(default_factory=dict)
    envelopes: dict[int, np.ndarray] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    cache_hits: int = 0

    def read_cache(self, index: int, variant: int, path: Path) -> bool:
        """Take one variant from the cache; False when it is missing or unreadable (then it is computed)."""
        try:
            with np.load(path) as data:
                self._add(index, variant, data)
        except (OSError, ValueError, KeyError):
            return False
        self.cache_hits += 1
        return True

    def collect(self, result: tuple[int, dict[int, dict[str, np.ndarray]], str | None]) -> None:
        """What :func:`_extract_one` returned for one recording."""
        index, packed, error = result
        if error:
            self.failed.append(error)
            return
        for variant, data in packed.items():
            self._add(index, variant, data)

    def _add(self, index: int, variant: int, data) -> None:
        feats, speech, env = _unpack(data)
        self.per_rec.setdefault(index, {})[variant] = (feats, speech)
        self.envelopes[index] = env

    def windows(self) -> Windows:
        """Every window, in order of recording then variant."""
        windows = Windows()
        for index in sorted(self.per_rec):
            for variant in sorted(self.per_rec[index]):
                feats, speech = self.per_rec[index][variant]
                for f, s in zip(feats, speech, strict=True):
                    windows.features.append(f)
                    windows.speech.append(s)
                    windows.recording.append(index)
                    windows.variant.append(variant)
        return windows


def _compute(tasks: list[tuple], collected: _Collected, workers: int, progress: bool) -> None:
    """Run :func:`_extract_one` on every task, in worker processes when ``workers`` > 1."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="features", unit="file", disable=not progress)
    if workers > 1:
        # spawn, not fork: the parent may already run TensorFlow threads (LOCO before a baseline).
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(_extract_one, tasks, chunksize=4):
                collected.collect(result)
                bar.update()
    else:
        for task in tasks:
            collected.collect(_extract_one(task))
            bar.update()
    bar.close()


def _correlation(x: np.ndarray, z: np.ndarray) -> float:
    """Pearson correlation; -1 where either side is flat (a steady tone has no shape to match)."""
    if np.ptp(x) == 0 or np.ptp(z) == 0:
        return -1.0
    return float(np.corrcoef(x, z)[0, 1])


def find_same_audio(recordings: Sequence[Recording], envelopes: dict[int, np.ndarray],
                    threshold: float = 0.97, max_shift: int = 4) -> list[tuple[str, str]]:
    """Pairs of recordings (same corpus) whose loudness envelopes match: one recording in two files.

    Compares 50 ms log-energy envelopes of clips of similar length, allowing a small offset (codec
    delay). Only long recordings (> 5 s) are compared; short acted clips of one sentence look alike.
    """
    pairs = []
    candidates = [(i, envelopes[i]) for i in envelopes if envelopes[i].size * ENVELOPE_SECONDS > 5.0]
    for a in range(len(candidates)):
        ia, ea = candidates[a]
        for b in range(a + 1, len(candidates)):
            ib, eb = candidates[b]
            if recordings[ia].corpus != recordings[ib].corpus or abs(ea.size - eb.size) > 20:
                continue
            best = -1.0
            for shift in range(-max_shift, max_shift + 1):
                x = ea[max(0, shift):]
                z = eb[max(0, -shift):]
                n = min(x.size, z.size)
                if n < 50:
                    continue
                best = max(best, _correlation(x[:n], z[:n]))
            if best >= threshold:
                pairs.append((recordings[ia].key, recordings[ib].key))
    return pairs
