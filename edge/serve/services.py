"""What a server is made of, built once per app: its options, the store, the kept uploads, the
models, the work queue, the retraining jobs and the registry, and the counters anyone may read."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GvdError
from .jobs import DEFAULT_RETRAIN_COMMAND, RetrainJobs, RetrainOptions
from .pool import ModelPool
from .promotion import Registry
from .recent import RecentLimits, RecentPredictions
from .security import AccessPolicy
from .store import ClientRate, FeedbackStore, StoreLimits
from .uploads import FORM_OVERHEAD, MB
from .work import WorkQueue
from .worker import ready

log = logging.getLogger("gvd.serve")
JSON_BODY_LIMIT = 16 * 1024
PROMOTION_TIMEOUT_SECONDS = 3600


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "gvd"


def default_feedback_dir() -> Path:
    return default_data_dir() / "feedback"


@dataclass(frozen=True)
class ServeOptions:
    model: str | None = None  # shipped name, path to .onnx, or None for the manifest default
    feedback_dir: str | os.PathLike = field(default_factory=default_feedback_dir)
    registry_dir: str | os.PathLike | None = None  # promoted models; None: <feedback_dir>/../registry
    holdout: str | os.PathLike | None = None  # held-out CSV: a successful retraining run is evaluated on it
    # request limits
    max_upload_mb: float = 20.0
    max_audio_seconds: float = 60.0
    workers: int = 1  # inference workers
    worker_processes: bool = False  # True: workers are processes (gvd serve), False: threads (tests)
    queue: int = 8  # requests that may wait for a worker; more get 503
    threads: int = 1  # onnxruntime intra-op threads
    # kept uploads, feedback quotas
    recent_items: int = 100
    recent_seconds: float = 3600.0
    recent_max_mb: float = 256.0
    feedback_max_mb: float = 1024.0
    feedback_max_rows: int = 100_000
    corrections_per_minute: int = 20
    # retraining
    retrain_threshold: int = 20
    retrain_command: str = DEFAULT_RETRAIN_COMMAND
    retrain_cwd: str | None = None
    # access
    host: str = "127.0.0.1"
    allow_origins: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    admin_token: str | None = None
    # the kiosk page
    kiosk_idle_seconds: float = 60.0  # back to the start screen after this long untouched (0 = never)
    kiosk_max_record_seconds: float = 15.0
    default_language: str = "en"  # when neither ?lang= nor the browser's languages choose one
    frame_ancestors: str = "'none'"  # the CSP frame-ancestors source list (who may embed the pages)

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_audio_seconds <= 0:
            raise ValueError("max_upload_mb and max_audio_seconds must be positive")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def registry_path(self) -> Path:
        if self.registry_dir is not None:
            return Path(self.registry_dir)
        return Path(self.feedback_dir).expanduser().resolve().parent / "registry"

    def policy(self) -> AccessPolicy:
        return AccessPolicy(bind_host=self.host, allow_origins=tuple(self.allow_origins),
                            allow_hosts=tuple(self.allow_hosts), admin_token=self.admin_token or None,
                            max_body_bytes={"/predict": self.max_upload_bytes + FORM_OVERHEAD},
                            default_body_bytes=JSON_BODY_LIMIT)


@dataclass
class Services:
    """Everything a request may touch, built once per app."""

    options: ServeOptions
    policy: AccessPolicy
    pool: ModelPool
    store: FeedbackStore
    recent: RecentPredictions
    jobs: RetrainJobs
    registry: Registry
    queue: WorkQueue
    rate: ClientRate
    started: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.jobs.stop()
        self.queue.close()
        self.recent.close()
        self.store.close()


def _lock_folder(root: Path):
    """One server per feedback folder: its start-up sweep must not delete another server's files."""
    handle = open(root / ".server.lock", "a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise GvdError(f"another gvd serve is using the feedback folder {root}; "
                       "stop it or pass --feedback-dir") from None
    return handle


def build_services(options: ServeOptions, detector: Any = None) -> tuple[Services, Any]:
    if detector is None:
        from ..detector import Detector

        detector = Detector(options.model, threads=options.threads)
    root = Path(options.feedback_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    folder_lock = _lock_folder(root)
    store = FeedbackStore(root, StoreLimits(int(options.feedback_max_mb * MB), options.feedback_max_rows,
                                            options.corrections_per_minute))
    registry = Registry(options.registry_path)
    pool = ModelPool(detector, threads=options.threads, registry=registry)
    recent = RecentPredictions(root / ".incoming", RecentLimits(options.recent_items, options.recent_seconds,
                                                                int(options.recent_max_mb * MB)))
    jobs = RetrainJobs(store, RetrainOptions(options.retrain_threshold, options.retrain_command, options.retrain_cwd),
                       on_success=_promotion_hook(options, store, registry, pool))
    services = Services(options, options.policy(), pool, store, recent, jobs, registry,
                        WorkQueue(options.workers, options.queue, processes=options.worker_processes),
                        ClientRate(options.corrections_per_minute))
    if options.worker_processes:
        services.queue.warm_up(ready, pool.source(pool.default_name), options.threads)
    sweep = store.last_sweep
    if sweep.orphans or sweep.partials or sweep.missing or sweep.imported_csv_rows:
        log.warning("feedback store: removed %d orphan and %d partial files, %d rows without audio; "
                    "imported %d CSV rows", sweep.orphans, sweep.partials, sweep.missing, sweep.imported_csv_rows)
    if not jobs.availability.available:
        log.warning("%s", jobs.availability.reason)
    return services, folder_lock


def _promotion_hook(options: ServeOptions, store: FeedbackStore, registry: Registry, pool: ModelPool):
    """After a successful run: ``gvd models promote`` on its default model, in its own low-priority
    process (the evaluation runs two models over the held-out set; the server stays light)."""

    def hook(run) -> str | None:
        if options.holdout is None:
            return "not evaluated: start gvd serve with --holdout to promote new models automatically"
        models = store.root / run.out_dir / "models"
        candidate = _default_model_file(models)
        argv = [sys.executable, "-m", "edge", "models", "promote", str(candidate), "--holdout", str(options.holdout),
                "--registry", str(registry.root), "--feedback-dir", str(store.root),
                "--baseline", str(pool.base().path), "--json"]
        done = subprocess.run(["nice", "-n", "10", *argv] if shutil.which("nice") else argv,
                              capture_output=True, text=True, timeout=PROMOTION_TIMEOUT_SECONDS)
        if done.returncode not in (0, 1) or not done.stdout.strip():
            return f"the new model could not be evaluated: {done.stderr.strip()[-300:]}"
        decision = json.loads(done.stdout.strip().splitlines()[-1])
        if decision["version"]:
            return f"promoted as {decision['version']}"
        return "not promoted: " + "; ".join(decision["reasons"])

    return hook


def _default_model_file(folder: Path) -> Path:
    """The default model of an export folder, from its manifest.json ({"default", "models": [{name, file}]})."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    files = {entry["name"]: entry["file"] for entry in manifest["models"]}
    name = manifest.get("default") or next(iter(files))
    return folder / Path(files[name]).name  # a name inside the folder, never a path out of it


def retraining_state(services: Services) -> dict[str, Any]:
    availability = services.jobs.availability
    return {"available": availability.available, "reason": availability.reason,
            "threshold": services.options.retrain_threshold}


def feedback_summary(services: Services) -> dict[str, Any]:
    """Counters for anyone: no paths, no commands, no process ids."""
    totals = services.store.totals()
    runs = services.jobs.runs(1)
    return {"rows": totals.rows, "corrections_pending": totals.pending, "threshold": services.options.retrain_threshold,
            "stored_mb": round(totals.bytes / MB, 3), "max_mb": services.options.feedback_max_mb,
            "max_rows": services.options.feedback_max_rows,
            "retraining": {**retraining_state(services), "status": runs[0].status if runs else "idle",
                           "runs": runs[0].id if runs else 0, "last": runs[0].public() if runs else None}}
