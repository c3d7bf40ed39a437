"""``gvd serve``: the HTTP API and the web page (the ``[serve]`` extra: fastapi, uvicorn, python-multipart).

Endpoints::

    GET  /          the web page (upload or record, result, timeline, correction)
    POST /predict   multipart upload of an audio file -> Prediction.to_dict() + prediction_id
    POST /feedback  {"prediction_id", "correct_label"} (JSON), or an upload + correct_label (multipart)
    GET  /feedback  feedback counters and the retraining state
    GET  /health    status, model, uptime, version
    GET  /models    the shipped models, their metrics, which one is loaded

Uploads are streamed to a temporary file and refused with 413 as soon as they pass the limit, so a
huge body never sits in memory or fills the disk. The model is loaded once, when the app is created.
This module imports only click, numpy and edge at import time; FastAPI is imported when the app is built.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import click
import numpy as np

from .. import __version__
from .. import audio
from ..audio import AUDIO_EXTENSIONS
from ..errors import AudioError, GvdError, MissingExtraError, ModelError, UnsupportedFormatError, require
from .feedback import (
    DEFAULT_RETRAIN_COMMAND,
    DuplicateFeedbackError,
    FeedbackError,
    FeedbackStore,
    InvalidFeedbackError,
    RecentPrediction,
    RecentPredictions,
    Retrainer,
    RetrainOptions,
    UnknownPredictionError,
    check_label,
    check_prediction_id,
    safe_suffix,
)

MB = 1024 * 1024
_FORM_OVERHEAD = 64 * 1024  # multipart headers, boundaries and small fields on top of the file itself
_MAX_FIELD_BYTES = 64 * 1024
# MediaRecorder and curl name their uploads by type; map the type when the file name has no extension.
_TYPE_SUFFIX = {
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/ogg": ".ogg", "audio/opus": ".opus",
    "audio/webm": ".webm", "video/webm": ".webm", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "audio/aac": ".aac", "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "video/mp4": ".mp4",
}


def default_feedback_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "gvd" / "feedback"


@dataclass(frozen=True)
class ServeOptions:
    model: str | None = None  # shipped name, path to .onnx, or None for the manifest default
    feedback_dir: str | os.PathLike = field(default_factory=default_feedback_dir)
    max_upload_mb: float = 20.0
    retrain_threshold: int = 20
    retrain_command: str = DEFAULT_RETRAIN_COMMAND
    retrain_cwd: str | None = None  # working folder of the retraining command (default: the server's)
    threads: int = 1  # onnxruntime intra-op threads
    recent_items: int = 100  # uploads kept for feedback: the last N ...
    recent_seconds: float = 3600.0  # ... and at most this old

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise ValueError("max_upload_mb must be positive")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


class UploadTooLargeError(GvdError):
    """The request body passed the upload limit."""


class BadUploadError(GvdError):
    """The request is not a usable upload (wrong content type, no file part, malformed form)."""


@dataclass
class Upload:
    path: Path | None  # the received file, inside the recent-predictions folder
    filename: str
    suffix: str
    fields: dict[str, str]


def _status_for(exc: BaseException) -> int:
    """HTTP status of an error raised on purpose; the order matters (subclasses first)."""
    for kind, status in (
        (UploadTooLargeError, 413), (UnsupportedFormatError, 415), (MissingExtraError, 415),
        (DuplicateFeedbackError, 409), (UnknownPredictionError, 404), (InvalidFeedbackError, 422),
        (BadUploadError, 400), (AudioError, 422), (FeedbackError, 422), (ModelError, 500),
    ):
        if isinstance(exc, kind):
            return status
    return 500


def sniff_suffix(path: Path) -> str | None:
    """The extension of a container recognised by its first bytes (for uploads without a usable name)."""
    with open(path, "rb") as handle:
        return audio.sniff_suffix(handle.read(audio.SNIFF_BYTES))


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays to plain JSON values (Prediction.to_dict() should already be plain)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _multipart_module():
    try:
        return require("python_multipart.multipart", "serve", "gvd serve")
    except MissingExtraError:  # python-multipart < 0.0.13 installs itself as 'multipart'
        return require("multipart.multipart", "serve", "gvd serve")


async def receive_upload(request, limit: int, recent: RecentPredictions) -> Upload:
    """Stream the request body to a file in ``recent``'s folder, refusing it once it passes ``limit``.

    Accepts ``multipart/form-data`` (one file part plus small text fields) or a raw ``audio/*`` /
    ``application/octet-stream`` body (name it with ``?filename=clip.m4a``).
    """
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
        raise UploadTooLargeError(f"the upload is {int(declared) / MB:.1f} MB; the limit is {limit / MB:g} MB")
    if media_type == "multipart/form-data":
        return await _receive_multipart(request, content_type, limit, recent)
    if media_type.startswith(("audio/", "video/")) or media_type == "application/octet-stream":
        filename = request.query_params.get("filename") or "upload"
        suffix = safe_suffix(filename, _TYPE_SUFFIX.get(media_type, ".bin"))
        path = recent.new_path(suffix)
        size = 0
        try:
            with open(path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise UploadTooLargeError(f"the upload passed the {limit / MB:g} MB limit")
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Upload(path, filename, suffix, dict(request.query_params))
    raise BadUploadError(
        f"send the audio as multipart/form-data (a 'file' field) or as an audio/* body, not {media_type or 'no content type'!r}")


async def _receive_multipart(request, content_type: str, limit: int, recent: RecentPredictions) -> Upload:
    multipart = _multipart_module()
    _, params = multipart.parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadUploadError("the multipart body has no boundary")

    state: dict[str, Any] = {"path": None, "out": None, "filename": "", "suffix": ".bin", "size": 0,
                             "fields": {}, "name": None, "header_name": b"", "header_value": b"",
                             "headers": {}, "text": bytearray()}

    def on_part_begin() -> None:
        state.update(headers={}, name=None, text=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header_name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["header_value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header_name"].lower()] = state["header_value"]
        state.update(header_name=b"", header_value=b"")

    def on_headers_finished() -> None:
        _, options = multipart.parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if state["path"] is not None:
                raise BadUploadError("send one audio file per request")
            filename = options[b"filename"].decode("utf-8", "replace")
            part_type = state["headers"].get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            suffix = safe_suffix(filename, _TYPE_SUFFIX.get(part_type, ".bin"))
            state.update(filename=filename, suffix=suffix, name=None)
            state["path"] = recent.new_path(suffix)
            state["out"] = open(state["path"], "wb")
        else:
            state["name"] = name

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["name"] is None and state["out"] is not None:
            state["size"] += len(chunk)
            if state["size"] > limit:
                raise UploadTooLargeError(f"the upload passed the {limit / MB:g} MB limit")
            state["out"].write(chunk)
        else:
            state["text"] += chunk
            if len(state["text"]) > _MAX_FIELD_BYTES:
                raise BadUploadError("a form field is too long")

    def on_part_end() -> None:
        if state["name"] is not None:
            state["fields"][state["name"]] = state["text"].decode("utf-8", "replace")
        elif state["out"] is not None and not state["out"].closed:
            state["out"].close()

    callbacks = {"on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
                 "on_header_field": on_header_field, "on_header_value": on_header_value,
                 "on_header_end": on_header_end, "on_headers_finished": on_headers_finished}
    total = 0
    try:
        parser = multipart.MultipartParser(boundary, callbacks)
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + _FORM_OVERHEAD:
                raise UploadTooLargeError(f"the upload passed the {limit / MB:g} MB limit")
            parser.write(chunk)
        parser.finalize()
    except GvdError:
        _drop(state)
        raise
    except Exception as exc:
        _drop(state)
        if exc.__class__.__name__ == "ClientDisconnect":
            raise
        raise BadUploadError(f"malformed multipart body: {exc}") from exc
    finally:
        if state["out"] is not None and not state["out"].closed:
            state["out"].close()
    return Upload(state["path"], state["filename"], state["suffix"], state["fields"])


def _drop(state: dict[str, Any]) -> None:
    if state["out"] is not None:
        state["out"].close()
    if state["path"] is not None:
        Path(state["path"]).unlink(missing_ok=True)


def _page() -> str:
    return resources.files("edge.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(options: ServeOptions | None = None, detector: Any = None):
    """Build the FastAPI app; loads the model now (or uses ``detector``) so errors show before serving."""
    options = options or ServeOptions()
    fastapi = require("fastapi", "serve", "gvd serve")
    _multipart_module()
    from contextlib import asynccontextmanager

    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    if detector is None:
        from ..detector import Detector

        detector = Detector(options.model, threads=options.threads)
    store = FeedbackStore(options.feedback_dir)
    retrainer = Retrainer(store, RetrainOptions(threshold=options.retrain_threshold,
                                                command=options.retrain_command, cwd=options.retrain_cwd))
    recent = RecentPredictions(max_items=options.recent_items, max_age_seconds=options.recent_seconds)
    predict_lock = threading.Lock()  # one inference at a time: predictable latency on a small device
    started = time.monotonic()
    page = _page()

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            recent.close()

    app = fastapi.FastAPI(title="gvd", version=__version__, lifespan=lifespan,
                          docs_url=None, redoc_url=None)  # the docs pages load scripts from a CDN
    app.state.detector = detector
    app.state.store = store
    app.state.retrainer = retrainer
    app.state.recent = recent
    app.state.options = options

    def takes_request(endpoint):
        # With postponed annotations FastAPI would look 'Request' up in this module's globals, where
        # it is not (fastapi is imported lazily); give it the class itself.
        endpoint.__annotations__["request"] = Request
        return endpoint

    @app.exception_handler(GvdError)
    async def gvd_error(request, exc: GvdError):
        status = _status_for(exc)
        # After a refused upload the rest of the body is still coming: close the connection instead
        # of letting the server read and discard it.
        headers = {"Connection": "close"} if status == 413 else None
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status, headers=headers)

    def predict_file(path: Path) -> dict[str, Any]:
        with predict_lock:
            result = _jsonable(detector.predict(path).to_dict())
        result.pop("path", None)  # the server's temporary file: meaningless to the client
        return result

    async def predict_upload(upload: Upload) -> tuple[str, dict[str, Any]]:
        """Run the model on a received file; keep the audio for feedback, or delete it on failure."""
        if upload.path is None:
            raise BadUploadError("no audio file in the request: send it in a form field named 'file'")
        try:
            if upload.suffix not in AUDIO_EXTENSIONS:  # name it by its content, for the decoder and for training
                sniffed = sniff_suffix(upload.path)
                if sniffed:
                    renamed = upload.path.with_suffix(sniffed)
                    upload.path.rename(renamed)
                    upload.path, upload.suffix = renamed, sniffed
            result = await run_in_threadpool(predict_file, upload.path)
        except AudioError as exc:
            upload.path.unlink(missing_ok=True)
            # Speak of the user's file, not of the server's temporary copy.
            shown = upload.filename or "the upload"
            exc.args = tuple(str(a).replace(str(upload.path), shown).replace(upload.path.name, shown)
                             for a in exc.args)
            raise
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        prediction_id = uuid.uuid4().hex
        recent.add(RecentPrediction(prediction_id, upload.path, upload.suffix, str(result.get("label")),
                                    result.get("p_female"), str(result.get("model") or detector.name)))
        return prediction_id, result

    def feedback_summary() -> dict[str, Any]:
        state = retrainer.state()
        return {"rows": state["rows"], "corrections_pending": state["corrections_pending"],
                "threshold": state["threshold"], "retrain_status": state.get("status"),
                "retrain_runs": state.get("runs", 0), "last_retrain": state.get("last")}

    def store_feedback(item: RecentPrediction, correct_label: str) -> dict[str, Any]:
        if item.predicted_label not in ("female", "male"):
            raise InvalidFeedbackError(
                "no speech was found in this recording, so it cannot teach the model; record a longer clip")
        record = store.add(item.audio, prediction_id=item.prediction_id, predicted_label=item.predicted_label,
                           p_female=item.p_female, correct_label=correct_label, model=item.model,
                           suffix=item.suffix)
        started_run = retrainer.maybe_start()
        return {"stored": record.to_dict(), "retrain_started": started_run, "feedback": feedback_summary()}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    @app.post("/predict")
    @takes_request
    async def predict(request):
        """Upload an audio file (multipart field ``file``); returns the prediction and its id for feedback."""
        upload = await receive_upload(request, options.max_upload_bytes, recent)
        prediction_id, result = await predict_upload(upload)
        return JSONResponse({**result, "prediction_id": prediction_id, "filename": upload.filename})

    @app.post("/feedback")
    @takes_request
    async def feedback(request):
        """Correct a prediction: JSON {prediction_id, correct_label}, or a multipart upload + correct_label."""
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise InvalidFeedbackError(f"the body is not valid JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise InvalidFeedbackError("send a JSON object {\"prediction_id\": ..., \"correct_label\": ...}")
            label = check_label(body.get("correct_label", ""))
            item = recent.take(check_prediction_id(body.get("prediction_id")))
            created = False
        else:
            upload = await receive_upload(request, options.max_upload_bytes, recent)
            try:
                label = check_label(upload.fields.get("correct_label", ""))
            except InvalidFeedbackError:
                if upload.path is not None:
                    upload.path.unlink(missing_ok=True)
                raise
            prediction_id, _ = await predict_upload(upload)
            item = recent.take(prediction_id)
            created = True
        try:
            answer = await run_in_threadpool(store_feedback, item, label)
        except DuplicateFeedbackError:
            recent.discard(item)
            raise
        except BaseException:
            if created:
                recent.discard(item)
            else:
                recent.give_back(item)  # nothing was stored: the user may try again
            raise
        recent.discard(item)  # the stored copy lives in the feedback folder now
        answer["prediction_id"] = item.prediction_id
        answer["predicted_label"] = item.predicted_label
        return JSONResponse(answer)

    @app.get("/feedback")
    async def feedback_state():
        """Feedback counters and the state of the retraining trigger."""
        return JSONResponse(await run_in_threadpool(feedback_summary))

    @app.get("/health")
    async def health():
        metadata = getattr(detector, "metadata", None)
        return JSONResponse({
            "status": "ok",
            "model": detector.name,
            "model_version": getattr(metadata, "model_version", None),
            "cell": getattr(metadata, "cell", None),
            "uptime_seconds": round(time.monotonic() - started, 3),
            "version": __version__,
            "max_upload_mb": options.max_upload_mb,
        })

    @app.get("/models")
    async def models():
        from ..model import list_models

        try:
            entries = [{k: v for k, v in entry.items() if k != "path"} for entry in list_models()]
            problem = None
        except (ModelError, OSError) as exc:
            entries, problem = [], str(exc)
        for entry in entries:
            entry["loaded"] = entry.get("name") == detector.name
        answer: dict[str, Any] = {"loaded": detector.name, "models": _jsonable(entries)}
        if problem:
            answer["error"] = problem
        return JSONResponse(answer)

    return app


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. The API has no authentication: keep localhost unless you trust the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model", default=None, help="Shipped model name (gru, lstm, rnn, ...) or path to an .onnx file.")
@click.option("--feedback-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where corrections are stored (a <label>/ training corpus + feedback.csv). "
                   "[default: $XDG_DATA_HOME/gvd/feedback]")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Refuse larger uploads with 413.")
@click.option("--retrain-threshold", default=20, show_default=True, type=click.IntRange(min=1),
              help="Corrections since the last retraining that start a new one.")
@click.option("--retrain-command", default=DEFAULT_RETRAIN_COMMAND, show_default=True,
              help="Shell command run in the background; placeholders {gvd} {python} {feedback_dir} {out} {timestamp}.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="onnxruntime threads.")
def serve(host: str, port: int, model: str | None, feedback_dir: Path | None, max_upload_mb: float,
          retrain_threshold: int, retrain_command: str, threads: int) -> None:
    """HTTP API (/predict, /feedback, /health, /models) and a web page to try the model."""
    try:
        uvicorn = require("uvicorn", "serve", "gvd serve")
        options = ServeOptions(model=model, feedback_dir=feedback_dir or default_feedback_dir(),
                               max_upload_mb=max_upload_mb, retrain_threshold=retrain_threshold,
                               retrain_command=retrain_command, threads=threads)
        app = create_app(options)
    except (GvdError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}: anyone who can reach this port can upload audio and "
                   "add training data (no authentication)", err=True)
    click.echo(f"gvd serve: model {app.state.detector.name}, feedback in {app.state.store.root}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
