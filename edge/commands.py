"""Runtime commands: ``gvd predict``, ``gvd listen``, ``gvd devices``, ``gvd models``.

Imported by ``gvd --help``, so only click, the standard library and light edge modules are imported
at module level; NumPy, onnxruntime and sounddevice load when a command runs.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import startup
from .errors import GvdError, UnreadableFolderError, what_is_wrong

if TYPE_CHECKING:
    from .mic import Microphone

LABEL_TEXT = {
    "en": {"female": "female", "male": "male", "no_speech": "no speech"},
    "id": {"female": "Perempuan", "male": "Laki-laki", "no_speech": "Tidak ada suara"},
}
STDIN = "-"
# The detector decodes standard input from a temporary file named like this; messages say '-' instead.
_STDIN_FILE = re.compile(r"^stdin\.\w+: ")


def _fail(exc: BaseException) -> click.ClickException:
    return click.ClickException(str(exc))


def _output_closed() -> None:
    """The reader of our pipe went away (``| head``, a kiosk app that quit): stop quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again


# -- predict ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FolderProblem:
    """A folder that could not be searched for audio files."""

    path: str
    reason: str

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.reason, "error_type": UnreadableFolderError.__name__}


@dataclass(frozen=True)
class Inputs:
    """What the command line names: files to classify, and folders that could not be searched."""

    files: list[str]
    unreadable_folders: list[FolderProblem]


def _audio_files_under(folder: Path, problems: list[FolderProblem]) -> list[str]:
    from .audio import AUDIO_EXTENSIONS

    def unreadable(exc: OSError) -> None:  # os.walk would otherwise skip the folder without a word
        reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
        problems.append(FolderProblem(str(exc.filename), f"{reason} (the folder cannot be searched)"))

    found: list[str] = []
    for parent, folders, files in os.walk(folder, onerror=unreadable):
        folders.sort()
        found.extend(os.path.join(parent, f) for f in files if Path(f).suffix.lower() in AUDIO_EXTENSIONS)
    return sorted(found)


def find_inputs(paths: Iterable[str]) -> Inputs:
    """Files as given, folders searched recursively for audio files, '-' for standard input."""
    files: list[str] = []
    problems: list[FolderProblem] = []
    for item in paths:
        if item != STDIN and Path(item).is_dir():
            files.extend(_audio_files_under(Path(item), problems))
        else:
            files.append(item)
    return Inputs(files, problems)


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """The files of :func:`find_inputs` (folders that cannot be searched are left out)."""
    return find_inputs(paths).files


def _error_message(path: str, exc: BaseException) -> str:
    """What is wrong with one input, without its name (the output shows the name once, in its place)."""
    if isinstance(exc, (GvdError, OSError)):
        message = str(exc)
    else:  # a decoder failing in a way we did not foresee: still one line, not a crash of the batch
        message = f"unexpected {type(exc).__name__}: {exc}"
    if path == STDIN:
        message = _STDIN_FILE.sub("", message)
    return what_is_wrong(message, path, Path(path).name)


def _error_record(path: str, exc: BaseException) -> dict[str, Any]:
    return {"path": path, "error": _error_message(path, exc), "error_type": type(exc).__name__}


def cap_jobs(jobs: int, option: str = "--jobs") -> int:
    """At most one worker per CPU this process may use: more only adds start-up time and contention."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    if jobs > cpus:
        click.echo(f"note: {option} {jobs} capped at {cpus}, the number of CPUs", err=True)
        return cpus
    return jobs


def _record(detector: Any, path: str, source: Any) -> dict[str, Any]:
    try:
        result = detector.predict(source)
    except Exception as exc:  # noqa: BLE001 - every failure becomes that input's error line
        return _error_record(path, exc)
    data = result.to_dict()
    data.pop("path")
    return {"path": path, **data}


# Worker processes keep their own detector, loaded once by the pool initializer.
_WORKER: dict[str, Any] = {}


def _init_worker(model: str | None, threads: int, threshold: float | None) -> None:
    from .detector import Detector

    _WORKER["detector"] = Detector(model, threads=threads, threshold=threshold)


def _work(item: tuple[str, Any]) -> dict[str, Any]:
    return _record(_WORKER["detector"], item[0], item[1])


class Progress:
    """A one-line progress indicator on standard error (tqdm is not part of the base install)."""

    def __init__(self, total: int, enabled: bool, label: str = "files"):
        self.total, self.enabled, self.label = total, enabled, label
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._shown = 0.0
        self._tty = sys.stderr.isatty()
        self._next_line = 0  # without a terminal, print a plain line every 10 %

    def update(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        if not self.enabled:
            return
        now = time.monotonic()
        if self._tty:
            if now - self._shown >= 0.1 or self.done == self.total:
                self._shown = now
                sys.stderr.write("\r" + self._text(now) + "\033[K")
                sys.stderr.flush()
        elif self.done >= self._next_line or self.done == self.total:
            self._next_line = self.done + max(1, self.total // 10)
            sys.stderr.write(self._text(now) + "\n")
            sys.stderr.flush()

    def _text(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.label}{failed} "
                f"{rate:.1f}/s ETA {eta:.0f}s")

    def close(self) -> None:
        if self.enabled and self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class _Output:
    """Writes results as a table, JSON lines or CSV, row by row as they arrive."""

    # The header stays English whatever --lang (it names fields for programs); with --lang other than
    # en a label_text column, as in JSON, carries the translated label.
    CSV_FIELDS = ("path", "label", "p_female", "confidence", "speech_seconds", "duration", "model", "reason",
                  "mixed", "warnings", "error")

    def __init__(self, fmt: str, lang: str, paths: list[str]):
        self.fmt, self.lang = fmt, lang
        self.labels = LABEL_TEXT[lang]
        self.width = min(max([len(p) for p in paths] + [4]), 60)
        if fmt == "csv":
            import csv  # only here: 0.7 ms of a start-up that writes no CSV (measured)

            self._csv = csv.writer(sys.stdout, lineterminator="\n")
            translated = (*self.CSV_FIELDS[:2], "label_text", *self.CSV_FIELDS[2:])
            self._fields = self.CSV_FIELDS if lang == "en" else translated
            self._csv.writerow(self._fields)
        elif fmt == "table":
            label_width = max(len(v) for v in self.labels.values())
            self._label_width = label_width
            click.echo(f"{'path':<{self.width}}  {'label':<{label_width}}  p_female  confidence  speech_s  duration_s"
                       "  notes")

    def write(self, record: dict[str, Any]) -> None:
        if self.fmt == "json":
            if "label" in record and self.lang != "en":
                record = {**record, "label_text": self.labels[record["label"]]}
            click.echo(json.dumps(record, allow_nan=False))
        elif self.fmt == "csv":
            row = {**record, "warnings": "; ".join(record.get("warnings") or [])}
            if "label" in record:
                row["label_text"] = self.labels[record["label"]]
                row["mixed"] = str(bool(record.get("mixed"))).lower()
            self._csv.writerow(["" if row.get(k) is None else row[k] for k in self._fields])
            sys.stdout.flush()
        else:
            path = record["path"]
            if len(path) > self.width:
                path = "..." + path[-(self.width - 3):]
            if "error" in record:
                click.echo(f"{path:<{self.width}}  error: {record['error']}")
            else:
                notes = ([record["reason"].replace("_", " ")] if record.get("reason") else []) + (
                    ["mixed voices"] if record.get("mixed") else []) + list(record.get("warnings") or [])
                click.echo(f"{path:<{self.width}}  {self.labels[record['label']]:<{self._label_width}}  "
                           f"{_fmt(record['p_female']):>8}  {_fmt(record['confidence']):>10}  "
                           f"{record['speech_seconds']:>8.2f}  {record['duration']:>10.2f}"
                           + (f"  {'; '.join(notes)}" if notes else ""))


def _predict_records(items: list[tuple[str, Any]], model: str | None, threads: int, threshold: float | None,
                     jobs: int, detector: Any) -> Iterator[dict[str, Any]]:
    if jobs <= 1 or len(items) < 2:
        for path, source in items:
            yield _record(detector, path, source)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # 'spawn' works the same on Linux, macOS and Windows, and never copies onnxruntime's state into a child.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(32, len(items) // (jobs * 8)))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(model, threads, threshold)) as pool:
        yield from pool.map(_work, items, chunksize=chunksize)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "-m", default=None,
              help="Shipped model name (gru, lstm, rnn) or an .onnx path; default: the manifest's default.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Decision threshold on p_female (default: the model's own).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="onnxruntime threads per process.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (at most the number of CPUs).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input (JSON lines).")
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV with a header row (English field names; --lang adds a translated label_text column).")
@click.option("--lang", type=click.Choice(["en", "id"]), default="en", show_default=True,
              help="Label language: en, or id (Perempuan / Laki-laki / Tidak ada suara).")
@click.option("--progress/--no-progress", default=None,
              help="Progress line on stderr (default: for 20+ inputs on a terminal).")
def predict(paths: tuple[str, ...], model: str | None, threshold: float | None, threads: int, jobs: int,
            as_json: bool, as_csv: bool, lang: str, progress: bool | None) -> None:
    """Classify audio files, folders (searched recursively) or '-' (an audio file on standard input).

    Audio too short to judge is "no speech" with reason too_short, not an error. Exit status: 0 when
    every input was classified, 1 when any failed (each failure gets its own line with the reason;
    the other inputs are still processed). See docs/inputs.md.
    """
    from .detector import Detector

    if as_json and as_csv:
        raise click.UsageError("--json and --csv cannot be used together: choose one output format")
    found = find_inputs(paths)
    if not found.files and not found.unreadable_folders:
        raise click.ClickException("no audio files found in " + ", ".join(paths))
    try:
        detector = Detector(model, threads=threads, threshold=threshold)  # fails early on a bad model
    except (GvdError, ValueError) as exc:
        raise _fail(exc) from exc
    startup.done()  # NumPy, onnxruntime and the model are loaded (see edge.startup)
    jobs = cap_jobs(jobs)
    items: list[tuple[str, Any]] = []
    for path in found.files:
        items.append((path, sys.stdin.buffer.read() if path == STDIN else path))
    folder_errors = [problem.record() for problem in found.unreadable_folders]
    out = _Output("json" if as_json else "csv" if as_csv else "table", lang,
                  found.files + [r["path"] for r in folder_errors])
    bar = Progress(len(items), progress if progress is not None else (len(items) >= 20 and sys.stderr.isatty()))
    failed = 0
    try:
        for record in folder_errors:
            failed += 1
            out.write(record)
        for record in _predict_records(items, model, threads, threshold, jobs, detector):
            is_error = "error" in record
            failed += int(is_error)
            out.write(record)
            bar.update(is_error)
    except BrokenPipeError:
        _output_closed()
        return
    finally:
        bar.close()
    if failed:
        click.echo(f"gvd: {failed} of {len(items) + len(folder_errors)} inputs failed", err=True)
        sys.exit(1)


# -- listen -----------------------------------------------------------------------------------------

def file_chunks(path: str, realtime: bool, chunk_seconds: float = 0.1,
                warnings: list[str] | None = None) -> Iterator[tuple[Any, int]]:
    """A file as (chunk, sample_rate) at its own rate, paced like a microphone unless ``realtime`` is False.

    The file is opened here, so that a missing or unreadable file fails before anything is shown.
    ``warnings``, when given, receives the decoder's warnings (e.g. a truncated file) at the end.
    """
    from .audio import open_audio

    info, blocks = open_audio(path)
    return _paced_chunks(info, blocks, realtime, chunk_seconds, warnings)


def _paced_chunks(info: Any, blocks: Iterator[Any], realtime: bool, chunk_seconds: float,
                  warnings: list[str] | None) -> Iterator[tuple[Any, int]]:
    from .audio import _check_finite

    name = Path(info.path).name
    step = max(1, int(info.sample_rate * chunk_seconds))
    started = time.monotonic()
    sent = 0
    for block in blocks:
        _check_finite(block, name)  # said of the file, as 'gvd predict' does
        for offset in range(0, len(block), step):
            chunk = block[offset : offset + step]
            if realtime:
                delay = started + sent / info.sample_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent += len(chunk)
            yield chunk, info.sample_rate
    if warnings is not None:
        warnings.extend(info.warnings)


def _probability_bar(p_female: float) -> str:
    """p(female) as ten cells, e.g. F[#######...]."""
    filled = round(p_female * 10)
    return "F[" + "#" * filled + "." * (10 - filled) + "]"


class _LiveDisplay:
    """A status line on a terminal, a line per decision otherwise, or JSON lines for a kiosk app."""

    def __init__(self, json_lines: bool, lang: str):
        self.json_lines, self.lang, self.labels = json_lines, lang, LABEL_TEXT[lang]
        self.tty = sys.stdout.isatty()
        self._status = False

    def emit(self, record: dict[str, Any]) -> None:
        click.echo(json.dumps(record, allow_nan=False))
        sys.stdout.flush()

    def too_short(self, seconds: float) -> None:
        """The input ended before one window could be judged: no speech, reason too_short."""
        if self.json_lines:
            self.emit({"event": "decision", "time": round(seconds, 3), "label": "no_speech", "reason": "too_short",
                       "p_female": None, "confidence": None, "speech": False,
                       **({"label_text": self.labels["no_speech"]} if self.lang != "en" else {})})
            return
        self._clear()
        click.echo(f"{seconds:7.1f} s  {self.labels['no_speech']} (too short)")

    def event(self, event: Any, overflows: int) -> None:
        if self.json_lines:
            record = event.to_dict()
            if self.lang != "en":
                record["label_text"] = self.labels[record["label"]]
            self.emit({"event": record.pop("kind"), **record, "overflows": overflows})
            return
        p = "" if event.p_female is None else f"p(female) {event.p_female:.2f}  "
        text = f"{event.time:7.1f} s  {self.labels[event.label]:<16}{p}"
        if overflows:
            text += f"overflows {overflows}"
        if event.kind == "decision":
            self._clear()
            click.echo(text)
        elif self.tty:
            bar = "" if event.p_female is None else _probability_bar(event.p_female) + "  "
            sys.stdout.write("\r  " + bar + text.strip() + "\033[K")
            sys.stdout.flush()
            self._status = True

    def _clear(self) -> None:
        if self._status:
            sys.stdout.write("\r\033[K")
            self._status = False

    def end(self, summary: dict[str, Any]) -> None:
        if self.json_lines:
            self.emit({"event": "end", **summary})
            return
        self._clear()
        reason = summary["reason"]
        last = summary["label"]
        text = f"{summary['seconds']:.1f} s of audio, {summary['windows']} windows ({reason})"
        if last is not None:
            text += f"; last label: {self.labels[last]}"
        if summary.get("overflows"):
            text += f"; {summary['overflows']} input overflows"
        if summary.get("dropped"):
            text += f"; {summary['dropped']} blocks dropped (inference fell behind)"
        for warning in summary.get("warnings") or []:
            text += f"; warning: {warning}"
        click.echo(text, err=not self.tty)


@dataclass
class _LiveSource:
    """Where live audio comes from: a microphone, or a file fed through the streaming path."""

    chunks: Iterator[tuple[Any, int]]
    info: dict[str, Any]
    mic: Microphone | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def overflows(self) -> int:
        return self.mic.overflows if self.mic else 0

    @property
    def dropped(self) -> int:
        return self.mic.dropped if self.mic else 0

    def close(self) -> None:
        if self.mic is not None:
            self.mic.close()


def _open_live_source(device: str | None, samplerate: int | None, input_file: str | None,
                      fast: bool) -> _LiveSource:
    from .mic import Microphone

    if input_file:
        warnings: list[str] = []
        chunks = file_chunks(input_file, realtime=not fast, warnings=warnings)
        return _LiveSource(chunks, {"source": input_file}, warnings=warnings)
    mic = Microphone(int(device) if device and device.isdigit() else device, samplerate).open()
    if samplerate and samplerate != mic.samplerate:
        click.echo(f"note: {mic.name} refused {samplerate} Hz; capturing at {mic.samplerate} Hz "
                   "and resampling", err=True)
    return _LiveSource(mic.chunks(), {"source": mic.name, "sample_rate": mic.samplerate}, mic)


def _announce(display: _LiveDisplay, source: _LiveSource, model_name: str, hop: float,
              from_file: bool) -> None:
    if display.json_lines:
        display.emit({"event": "start", "model": model_name, "hop_seconds": hop, **source.info})
    elif sys.stdout.isatty() and not from_file:
        click.echo(f"listening on {source.info['source']} at {source.info['sample_rate']} Hz "
                   f"with model {model_name}; Ctrl-C to stop", err=True)


def _feed(stream: Any, source: _LiveSource, display: _LiveDisplay, duration: float | None) -> str:
    """Streams the source to the display, then flushes the last windows; returns why it stopped."""
    reason = "end of input"
    for chunk, rate in source.chunks:
        for event in stream.feed(chunk, rate):
            display.event(event, source.overflows)
        if duration is not None and stream.seconds >= duration:
            reason = "duration reached"
            break
    for event in stream.flush():
        display.event(event, source.overflows)
    return reason


def _run_live(stream: Any, source: _LiveSource, display: _LiveDisplay,
              duration: float | None) -> tuple[str, GvdError | None]:
    """Why the stream stopped, and the error that stopped it (if one did)."""
    from .mic import DeviceLostError

    error: GvdError | None = None
    try:
        reason = _feed(stream, source, display, duration)
    except KeyboardInterrupt:
        reason = "interrupted"
    except BrokenPipeError:
        _output_closed()
        reason = "output closed"
    except DeviceLostError as exc:
        reason, error = "device lost", exc
    except GvdError as exc:
        reason, error = "error", exc
    finally:
        source.close()
    return reason, error


def _end_live(display: _LiveDisplay, stream: Any, source: _LiveSource, reason: str,
              error: GvdError | None) -> None:
    last = stream.last_event
    label = last.label if last else None
    if last is None and error is None and stream.seconds > 0:
        # Less audio than one window needs: the same answer as 'gvd predict', not silence on the output.
        display.too_short(stream.seconds)
        label = "no_speech"
    display.end({"reason": reason, "seconds": round(stream.seconds, 3), "windows": stream.windows,
                 "label": label, "overflows": source.overflows, "dropped": source.dropped,
                 **({"warnings": source.warnings} if source.warnings else {}),
                 **({"error": str(error)} if error else {})})


@click.command()
@click.option("--device", "-d", default=None, help="Input device index or part of its name (see 'gvd devices').")
@click.option("--samplerate", type=click.IntRange(min=1000), default=None,
              help="Capture rate; default: the device's own (audio is resampled for the model).")
@click.option("--input", "-i", "input_file", default=None,
              help="Feed a file through the streaming path instead of a microphone (no sounddevice needed).")
@click.option("--fast", is_flag=True, help="With --input: as fast as possible instead of real time.")
@click.option("--model", "-m", default=None, help="Shipped model name or .onnx path.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--hop", type=click.FloatRange(0.05, 10.0), default=0.5, show_default=True,
              help="Seconds between windows.")
@click.option("--smoothing", type=click.IntRange(min=1), default=3, show_default=True,
              help="Windows averaged per decision.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds of audio.")
@click.option("--json", "json_lines", is_flag=True, help="One JSON event per line (for a kiosk app reading a pipe).")
@click.option("--lang", type=click.Choice(["en", "id"]), default="en", show_default=True)
def listen(device: str | None, samplerate: int | None, input_file: str | None, fast: bool, model: str | None,
           threshold: float | None, threads: int, hop: float, smoothing: int, duration: float | None,
           json_lines: bool, lang: str) -> None:
    """Live detection from a microphone (extra [mic]), or from a file with --input.

    Prints a decision whenever the label changes (female, male, no speech). Ctrl-C stops cleanly.
    """
    from .detector import Detector

    if fast and not input_file:
        raise click.UsageError("--fast only applies to --input FILE")
    try:
        detector = Detector(model, threads=threads, threshold=threshold)
        stream = detector.stream(hop_seconds=hop, smoothing=smoothing)
        source = _open_live_source(device, samplerate, input_file, fast)
    except (GvdError, OSError) as exc:  # OSError: a missing file or a folder given to --input
        raise _fail(exc) from exc
    startup.done()  # the model and the audio source are ready (see edge.startup)
    display = _LiveDisplay(json_lines, lang)
    _announce(display, source, detector.name, hop, from_file=bool(input_file))
    reason, error = _run_live(stream, source, display, duration)
    if reason == "output closed":
        return
    _end_live(display, stream, source, reason, error)
    if error is not None:
        raise _fail(error)


# -- devices, models --------------------------------------------------------------------------------

@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def devices(as_json: bool) -> None:
    """List audio input devices (extra [mic]); '*' marks the default."""
    from dataclasses import asdict

    from .mic import input_devices

    try:
        found = input_devices()
    except GvdError as exc:
        raise _fail(exc) from exc
    if as_json:
        for device in found:
            click.echo(json.dumps(asdict(device)))
        return
    if not found:
        click.echo("no input devices found")
        return
    for d in found:
        click.echo(f"{'*' if d.default else ' '} {d.index:>3}  {d.name}  ({d.hostapi}, {d.channels} in, "
                   f"{d.default_samplerate:g} Hz)")


def _headline_metrics(metrics: dict[str, Any], limit: int = 4) -> str:
    """A few top-level numeric metrics, for the table."""
    shown = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}"
                     for k, v in shown[:limit])


# ``gvd models promote|rollback|history`` belong to the server's model registry ([serve] extra): they
# are entry points of the "gvd.models" group, so the core never imports them; their summaries are here
# so that ``gvd models --help`` imports nothing either.
REGISTRY_HELP = {
    "promote": "Evaluate CANDIDATE (.onnx) and make it the served model if it is not worse than the current one.",
    "rollback": "Serve the version that was current before the current one (or the shipped model).",
    "history": "Promotions, refusals and rollbacks, oldest first.",
}


class _ModelsGroup(click.Group):
    """``gvd models`` lists; its registry subcommands load only when they are run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(REGISTRY_HELP)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group="gvd.models") if ep.name == name]
        if not found:
            return None
        try:
            return found[0].load()
        except ImportError as exc:
            raise click.ClickException(f"'gvd models {name}' needs the [serve] extra ({exc})") from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=text).get_short_help_str(60))
                                for name, text in REGISTRY_HELP.items()])


@click.group(cls=_ModelsGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="The manifest entries as JSON lines.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The shipped models, their metrics, and which one is the default."""
    if ctx.invoked_subcommand is not None:
        return
    from .model import list_models, models_dir

    try:
        entries = list_models()
    except GvdError as exc:
        raise _fail(exc) from exc
    if not entries:
        raise click.ClickException("no shipped models are installed (models/manifest.json not found); "
                                   "pass an .onnx path with --model")
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    click.echo(f"models in {models_dir()}  (* = default)")
    for e in entries:
        size = e.get("size_bytes")
        size_text = f"{size / 1024:.0f} KB" if isinstance(size, (int, float)) else "?"
        quant = " int8" if e.get("quantized") else ""
        click.echo(f"{'*' if e['default'] else ' '} {e['name']:<12} {e.get('cell', '?'):<5}{quant:<5} {size_text:>8}  "
                   f"{_headline_metrics(e.get('metrics') or {})}")
        if e.get("description"):
            click.echo(f"    {e['description']}")


__all__ = ["devices", "expand_inputs", "file_chunks", "listen", "models", "predict"]
