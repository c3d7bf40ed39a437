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

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..audio import AUDIO_EXTENSIONS
from ..errors import GvdError, require
from .errors import ApiError, from_runtime, status_word
from .jobs import DEFAULT_RETRAIN_COMMAND
from .promotion import load_holdout
from .recent import RecentPrediction
from .security import GuardMiddleware, is_loopback
from .services import (  # noqa: F401
    ServeOptions,
    Services,
    build_services,
    default_data_dir,
    default_feedback_dir,
    feedback_summary,
    retraining_state,
)
from .store import Correction, check_label, check_prediction_id
from .uploads import Upload, receive_upload, sniff_suffix
from .work import ClientGone
from .worker import predict_file

log = logging.getLogger("gvd.serve")
FEEDBACK_FIELDS = ("prediction_id", "correct_label", "consent")


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
    def takes_request(endpoint):
        # With postponed annotations FastAPI would look 'Request' up in this module's globals, where
        # it is not (fastapi is imported lazily); give it the class itself.
        endpoint.__annotations__["request"] = Request
        return endpoint

    _install_predict(app, services, takes_request, JSONResponse)
    _install_feedback(app, services, takes_request, JSONResponse)
    _install_state(app, services, takes_request, JSONResponse)


def _install_predict(app, services: Services, takes_request, JSONResponse) -> None:
    @app.post("/predict")
    @takes_request
    async def predict(request):
        """Upload an audio file (multipart field ``file``); ``?model=`` one of ``GET /models``."""
        name = services.pool.resolve(request.query_params.get("model"))
        services.queue.check_room()
        prediction_id, result = await _predict_upload(services, request, name)
        return JSONResponse({**result, "prediction_id": prediction_id})


def _install_feedback(app, services: Services, takes_request, JSONResponse) -> None:
    @app.post("/feedback")
    @takes_request
    async def feedback(request):
        """Record the right label of a recent prediction, with the user's consent to keep its audio."""
        body = await _feedback_body(request)
        prediction_id = check_prediction_id(body.get("prediction_id"))
        label = check_label(body.get("correct_label"))
        client = _client_host(request)
        services.rate.check(client)
        record = await _store_correction(services, services.recent.take(prediction_id), label, client)
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


def _install_state(app, services: Services, takes_request, JSONResponse) -> None:
    pool, queue, options = services.pool, services.queue, services.options

    @app.get("/health")
    async def health():
        default = pool.resolve(None)
        metadata = pool.metadata(default)
        return JSONResponse({
            "status": "ok", "model": default, "model_version": getattr(metadata, "model_version", None),
            "cell": getattr(metadata, "cell", None), "uptime_seconds": round(time.monotonic() - services.started, 3),
            "version": __version__, "max_upload_mb": options.max_upload_mb,
            "max_audio_seconds": options.max_audio_seconds,
            "queue": {"pending": queue.pending, "capacity": queue.capacity, "refused": queue.refused},
            "retraining": retraining_state(services),
        })

    @app.get("/models")
    async def models():
        return JSONResponse(pool.entries())

    @app.get("/models/history")
    @takes_request
    async def models_history(request):
        _admin(services, request)
        return JSONResponse(services.registry.history())


async def _predict_upload(services: Services, request, name: str) -> tuple[str, dict[str, Any]]:
    """Receive the upload, predict it in a worker and remember it for a correction."""
    options, pool = services.options, services.pool
    upload = await receive_upload(request, options.max_upload_bytes, services.recent.new_path)
    try:
        _name_by_content(upload)
        pool.mark_used(name)
        result = await services.queue.run(request.is_disconnected, predict_file, pool.source(name), options.threads,
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
    item = RecentPrediction(prediction_id, upload.path, str(result.get("label")), result.get("p_female"),
                            str(result.get("model") or name), bool(result.get("mixed")), _client_host(request),
                            upload.path.stat().st_size)
    if not _teachable(item):  # it can never be stored: keep what answers a correction, not the audio
        upload.path.unlink(missing_ok=True)
        item.size = 0
    services.recent.add(item)
    return prediction_id, result


def _name_by_content(upload: Upload) -> None:
    """An upload without a known audio extension is renamed by its content, for the decoder and for training."""
    if upload.suffix in AUDIO_EXTENSIONS:
        return
    sniffed = sniff_suffix(upload.path)
    if sniffed:
        renamed = upload.path.with_suffix(sniffed)
        upload.path.rename(renamed)
        upload.path, upload.suffix = renamed, sniffed


async def _store_correction(services: Services, item: RecentPrediction, label: str, client: str) -> Correction:
    """Move the recording into the feedback store with its right label; on failure it may be corrected again."""
    try:
        _check_teachable(item)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(
            lambda: services.store.add(item.audio, prediction_id=item.prediction_id,
                                       predicted_label=item.predicted_label, p_female=item.p_female,
                                       correct_label=label, model=item.model, client=client, move=True))
    except BaseException:
        services.recent.give_back(item)  # nothing was stored: the user may try again
        raise


def _client_host(request) -> str:
    return request.client.host if request.client else "unknown"


async def _feedback_body(request) -> dict[str, Any]:
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
@click.option("--kiosk-idle-seconds", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="The kiosk page returns to its start screen after this long untouched (0 = never).")
@click.option("--kiosk-max-record-seconds", default=15.0, show_default=True, type=click.FloatRange(1, 60),
              help="Longest recording on the pages (a countdown shows the time left).")
@click.option("--lang", "default_language", default="en", show_default=True, type=click.Choice(["en", "id"]),
              help="Page language when neither ?lang= nor the browser's languages choose one.")
@click.option("--frame-ancestors", default="'none'", show_default=True,
              help="CSP frame-ancestors source list: who may embed the pages in a frame.")
def serve(host: str, port: int, model: str | None, feedback_dir: Path | None, registry_dir: Path | None,
          holdout: Path | None, max_upload_mb: float, max_audio_seconds: float, workers: int, queue: int, threads: int,
          feedback_max_mb: float, feedback_max_rows: int, corrections_per_minute: int, retrain_threshold: int,
          retrain_command: str, allow_origins: tuple[str, ...], allow_hosts: tuple[str, ...],
          admin_token: str | None, kiosk_idle_seconds: float, kiosk_max_record_seconds: float,
          default_language: str, frame_ancestors: str) -> None:
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
            admin_token=admin_token, kiosk_idle_seconds=kiosk_idle_seconds,
            kiosk_max_record_seconds=kiosk_max_record_seconds, default_language=default_language,
            frame_ancestors=frame_ancestors)
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
