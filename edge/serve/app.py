"""``gvd serve``: the HTTP API (the ``[serve]`` extra: fastapi, uvicorn, python-multipart).

Endpoints (errors are always ``{"error": <machine word>, "message": <sentence>}``)::

    POST /predict?model=NAME   multipart field ``file`` -> Prediction.to_dict() + prediction_id
    POST /feedback             {"prediction_id", "correct_label", "consent": true} (JSON)
    GET  /feedback             counters and the retraining state (?details=1: runs, admin only)
    GET  /health               status, default model, queue, whether retraining is available
    GET  /models               [{"name", "cell", "kind", "default", "loaded", "metrics"}]
    GET  /models/history       promotions, refusals and rollbacks (admin only)

The pages (``/``) are installed by :mod:`edge.serve.pages`. This module imports only click and edge
at import time; FastAPI is imported when the app is built.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..audio import AUDIO_EXTENSIONS
from ..errors import GvdError, require
from .errors import ApiError, from_runtime, status_word
from .jobs import DEFAULT_RETRAIN_COMMAND, RetrainJobs, RetrainOptions
from .pool import ModelPool
from .promotion import LabelledClip, Registry, load_holdout, promote
from .recent import RecentLimits, RecentPrediction, RecentPredictions
from .security import AccessPolicy, GuardMiddleware, is_loopback
from .store import ClientRate, FeedbackStore, StoreLimits, check_label, check_prediction_id
from .uploads import FORM_OVERHEAD, MB, receive_upload, sniff_suffix
from .work import ClientGone, WorkQueue
from .worker import predict_file, ready

log = logging.getLogger("gvd.serve")
FEEDBACK_FIELDS = ("prediction_id", "correct_label", "consent")
JSON_BODY_LIMIT = 16 * 1024


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
    """After a successful run: evaluate its default model and promote it if it is not worse."""

    def hook(run) -> str | None:
        if options.holdout is None:
            return "not evaluated: start gvd serve with --holdout to promote new models automatically"
        from ..model import load_manifest

        models = store.root / run.out_dir / "models"
        manifest = load_manifest(models)
        entries = {e["name"]: e for e in manifest["models"]}
        candidate = models / entries[manifest.get("default") or next(iter(entries))]["file"]
        decision, version = promote(candidate, registry, load_holdout(options.holdout),
                                    pool.base().path, corrections_of(store),
                                    source=f"retraining run {run.id}")
        return f"promoted as {version.name}" if version else "not promoted: " + "; ".join(decision.reasons)

    return hook


def corrections_of(store: FeedbackStore, limit: int = 200) -> list[LabelledClip]:
    return [LabelledClip(store.root / c.file, c.correct_label, "corrections") for c in store.recent(limit)]


def create_app(options: ServeOptions | None = None, detector: Any = None):
    """Build the FastAPI app; loads the model and sweeps the store now, so errors show before serving."""
    options = options or ServeOptions()
    fastapi = require("fastapi", "serve", "gvd serve")
    require("python_multipart", "serve", "gvd serve")
    from contextlib import asynccontextmanager

    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    services, folder_lock = build_services(options, detector)

    def render(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            services.close()
            folder_lock.close()

    app = fastapi.FastAPI(title="gvd", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = services
    if options.allow_origins:  # pages on the allowed origins may read the answers too (CORS)
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(options.allow_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization"])
    app.add_middleware(GuardMiddleware, policy=services.policy, render=render)  # outermost: checked first

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return render(exc)

    @app.exception_handler(GvdError)
    async def runtime_error(request, exc: GvdError):
        return render(from_runtime(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return render(ApiError(exc.status_code, status_word(exc.status_code), str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return render(ApiError(422, "invalid_request", "the request does not match the API"))

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return render(ApiError(500, "internal_error", "the server failed on this request; see its log"))

    install_routes(app, services, Request, JSONResponse)
    from .pages import install_pages

    install_pages(app, options)
    return app


def install_routes(app, services: Services, Request, JSONResponse) -> None:
    options, pool, recent, queue = services.options, services.pool, services.recent, services.queue

    def takes_request(endpoint):
        # With postponed annotations FastAPI would look 'Request' up in this module's globals, where
        # it is not (fastapi is imported lazily); give it the class itself.
        endpoint.__annotations__["request"] = Request
        return endpoint

    async def predict_upload(request, name: str) -> tuple[str, dict[str, Any]]:
        upload = await receive_upload(request, options.max_upload_bytes, recent.new_path)
        try:
            if upload.suffix not in AUDIO_EXTENSIONS:  # name it by its content, for the decoder and for training
                sniffed = sniff_suffix(upload.path)
                if sniffed:
                    renamed = upload.path.with_suffix(sniffed)
                    upload.path.rename(renamed)
                    upload.path, upload.suffix = renamed, sniffed
            pool.mark_used(name)
            result = await queue.run(request.is_disconnected, predict_file, pool.source(name), options.threads,
                                     str(upload.path), options.max_audio_seconds)
        except ApiError as exc:
            upload.path.unlink(missing_ok=True)
            shown = upload.filename or "the upload"  # the user's file, not the server's copy
            exc.message = exc.message.replace(str(upload.path), shown).replace(upload.path.name, shown)
            raise
        except ClientGone:
            upload.path.unlink(missing_ok=True)
            raise ApiError(499, "client_closed_request", "the client went away before the answer") from None
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        prediction_id = uuid.uuid4().hex
        client = request.client.host if request.client else "unknown"
        item = RecentPrediction(prediction_id, upload.path, str(result.get("label")), result.get("p_female"),
                                str(result.get("model") or name), bool(result.get("mixed")), client,
                                upload.path.stat().st_size)
        if not _teachable(item):  # it can never be stored: keep what answers a correction, not the audio
            upload.path.unlink(missing_ok=True)
            item.size = 0
        recent.add(item)
        return prediction_id, result

    @app.post("/predict")
    @takes_request
    async def predict(request):
        """Upload an audio file (multipart field ``file``); ``?model=`` one of ``GET /models``."""
        name = pool.resolve(request.query_params.get("model"))
        queue.check_room()
        prediction_id, result = await predict_upload(request, name)
        return JSONResponse({**result, "prediction_id": prediction_id})

    @app.post("/feedback")
    @takes_request
    async def feedback(request):
        """Record the right label of a recent prediction, with the user's consent to keep its audio."""
        body = await _feedback_body(request)
        prediction_id = check_prediction_id(body.get("prediction_id"))
        label = check_label(body.get("correct_label"))
        client = request.client.host if request.client else "unknown"
        services.rate.check(client)
        item = recent.take(prediction_id)
        try:
            _check_teachable(item)
            from starlette.concurrency import run_in_threadpool

            record = await run_in_threadpool(
                lambda: services.store.add(item.audio, prediction_id=item.prediction_id,
                                           predicted_label=item.predicted_label, p_female=item.p_female,
                                           correct_label=label, model=item.model, client=client, move=True))
        except BaseException:
            recent.give_back(item)  # nothing was stored: the user may try again
            raise
        started = services.jobs.maybe_start()
        stored = {k: v for k, v in record.to_dict().items() if k != "file"}
        return JSONResponse({"prediction_id": prediction_id, "stored": stored, "retrain_started": started,
                             "feedback": feedback_summary(services)})

    @app.get("/feedback")
    @takes_request
    async def feedback_state(request):
        """Counters and the retraining state; ``?details=1`` adds the runs (admin only)."""
        answer = feedback_summary(services)
        if request.query_params.get("details"):
            _admin(services, request)
            answer["runs"] = [run.admin() for run in services.jobs.runs()]
        return JSONResponse(answer)

    @app.get("/health")
    async def health():
        default = pool.resolve(None)
        metadata = pool.base().metadata if default == pool.base_name else None
        return JSONResponse({
            "status": "ok", "model": default, "model_version": getattr(metadata, "model_version", None),
            "cell": getattr(metadata, "cell", None), "uptime_seconds": round(time.monotonic() - services.started, 3),
            "version": __version__, "max_upload_mb": options.max_upload_mb,
            "max_audio_seconds": options.max_audio_seconds,
            "queue": {"pending": queue.pending, "capacity": queue.capacity, "refused": queue.refused},
            "retraining": _retraining(services),
        })

    @app.get("/models")
    async def models():
        return JSONResponse(pool.entries())

    @app.get("/models/history")
    @takes_request
    async def models_history(request):
        _admin(services, request)
        return JSONResponse(services.registry.history())


async def _feedback_body(request) -> dict[str, Any]:
    import json

    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "json_required", 'send the correction as JSON: {"prediction_id": ..., '
                       '"correct_label": "female"|"male", "consent": true}')
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_json", "send a JSON object")
    unknown = sorted(set(body) - set(FEEDBACK_FIELDS))
    if unknown:
        raise ApiError(422, "unknown_fields", f"unknown fields {unknown}; the fields are {list(FEEDBACK_FIELDS)}",
                       fields=unknown)
    if body.get("consent") is not True:
        raise ApiError(422, "consent_required", "the recording is kept for training only with the user's consent: "
                       'send "consent": true once the user agreed; nothing was stored')
    return body


def _teachable(item: RecentPrediction) -> bool:
    return not item.mixed and item.predicted_label in ("female", "male")


def _check_teachable(item: RecentPrediction) -> None:
    if item.mixed:
        raise ApiError(422, "mixed_clip", "the windows of this recording disagree (two voices?), so one label "
                       "cannot describe it; record one speaker at a time")
    if item.predicted_label not in ("female", "male"):
        raise ApiError(422, "no_speech", "no speech was found in this recording, so it cannot teach the model; "
                       "record a longer clip")


def _admin(services: Services, request) -> None:
    services.policy.check_admin(request.headers.get("authorization"),
                                request.client.host if request.client else None)


def _retraining(services: Services) -> dict[str, Any]:
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
            "retraining": {**_retraining(services), "status": runs[0].status if runs else "idle",
                           "runs": runs[0].id if runs else 0, "last": runs[0].public() if runs else None}}


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Beyond localhost, set --admin-token and see docs/serving.md.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model", default=None, help="Shipped model name (gru, lstm, rnn, ...) or path to an .onnx file.")
@click.option("--feedback-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where corrections are stored. [default: $XDG_DATA_HOME/gvd/feedback]")
@click.option("--registry", "registry_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Promoted model versions. [default: next to the feedback folder]")
@click.option("--holdout", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Held-out CSV (file,label,corpus,speaker): a retrained model is promoted only if not worse on it.")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--max-audio-seconds", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Longer recordings are refused (422) before any model work.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Inference worker processes.")
@click.option("--queue", default=8, show_default=True, type=click.IntRange(min=0),
              help="Requests that may wait for a worker; more are refused with 503 + Retry-After.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="onnxruntime threads.")
@click.option("--feedback-max-mb", default=1024.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--feedback-max-rows", default=100_000, show_default=True, type=click.IntRange(min=1))
@click.option("--corrections-per-minute", default=20, show_default=True, type=click.IntRange(min=1),
              help="Per client address.")
@click.option("--retrain-threshold", default=20, show_default=True, type=click.IntRange(min=1),
              help="Corrections since the last retraining that start a new one.")
@click.option("--retrain-command", default=DEFAULT_RETRAIN_COMMAND, show_default=True,
              help="Shell command run in the background; placeholders {gvd} {python} {feedback_dir} {out} {run}.")
@click.option("--allow-origin", "allow_origins", multiple=True,
              help="Another origin (scheme://host[:port]) whose pages may post to this server. Repeatable.")
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="Another Host name this server answers to (e.g. the reverse proxy's name). Repeatable.")
@click.option("--admin-token", envvar="GVD_ADMIN_TOKEN", default=None,
              help="Bearer token for admin requests (at least 16 characters). [env: GVD_ADMIN_TOKEN]")
def serve(host: str, port: int, model: str | None, feedback_dir: Path | None, registry_dir: Path | None,
          holdout: Path | None, max_upload_mb: float, max_audio_seconds: float, workers: int, queue: int, threads: int,
          feedback_max_mb: float, feedback_max_rows: int, corrections_per_minute: int, retrain_threshold: int,
          retrain_command: str, allow_origins: tuple[str, ...], allow_hosts: tuple[str, ...],
          admin_token: str | None) -> None:
    """HTTP API (/predict, /feedback, /health, /models) and the kiosk page."""
    logging.basicConfig(level=logging.INFO, format="gvd serve: %(message)s")
    try:
        uvicorn = require("uvicorn", "serve", "gvd serve")
        options = ServeOptions(
            model=model, feedback_dir=feedback_dir or default_feedback_dir(), registry_dir=registry_dir,
            holdout=holdout, max_upload_mb=max_upload_mb, max_audio_seconds=max_audio_seconds, workers=workers,
            queue=queue, worker_processes=True, threads=threads, feedback_max_mb=feedback_max_mb,
            feedback_max_rows=feedback_max_rows,
            corrections_per_minute=corrections_per_minute, retrain_threshold=retrain_threshold,
            retrain_command=retrain_command, host=host, allow_origins=allow_origins, allow_hosts=allow_hosts,
            admin_token=admin_token)
        if holdout is not None:
            load_holdout(holdout)  # a broken held-out set stops the start, not the first promotion
        app = create_app(options)
    except (GvdError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not is_loopback(host) and not admin_token:
        click.echo(f"warning: binding {host} without --admin-token: admin requests are refused", err=True)
    services: Services = app.state.services
    click.echo(f"gvd serve: model {services.pool.default_name}, retraining "
               f"{'armed' if services.jobs.availability.available else 'OFF'}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
