"""``gvd bench``: latency, streaming cost, cold start and memory of the shipped models, measured here.

For every model and thread count it times the whole path from a file on disk to a result, per clip
and per stage (the detector's own ``timings_ms``), as p50/p95/p99 after a warm-up; the CPU that
streaming costs per second of audio; how long a fresh ``gvd predict`` process takes to its first
result and how much memory it peaks at; and the model's size and load time. In the same run, unless
``--no-original``, it times the original university pipeline (librosa, noisereduce, Keras) on the
same clips in a subprocess, so that gvd itself never imports TensorFlow or librosa.

Only light modules are imported here: ``gvd --help`` imports every command module.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

TARGET_MS = 200.0
STAGES = ("decode", "resample", "clean", "features", "inference")
# Goals for a 2-core x86 machine, one thread (see benchmarks/README.md).
GOALS = {
    "e2e_p50_ms": 5.0,
    "e2e_p99_ms": 10.0,
    "speedup_e2e": 30.0,
    "speedup_cold_start": 10.0,
    "speedup_memory": 5.0,
    "stream_cpu_percent": 2.0,
}
STREAM_CHUNK_SECONDS = 0.1  # what a microphone callback typically delivers
STREAM_RATE = 48000  # a USB microphone's rate: resampling to 16 kHz is part of the streaming cost
ORIGINAL_SCRIPT = "original_pipeline.py"


@dataclass(frozen=True)
class BenchOptions:
    runs: int = 50
    warmup: int = 5
    threads: tuple[int, ...] = (1, 2)
    models: tuple[str, ...] = ()  # empty: every shipped model
    clips: tuple[Path, ...] = ()  # empty: the bundled samples
    original: bool = True
    keras_dir: Path | None = None
    cold_runs: int = 5
    original_runs: int = 10
    original_cold_runs: int = 3
    stream_seconds: float = 60.0
    profile: bool = False
    out: Path = Path("benchmarks/results")

    @classmethod
    def quick(cls, **changes: Any) -> "BenchOptions":
        """A run of a few seconds, for tests and smoke checks: the numbers are noisy."""
        base = dict(runs=3, warmup=1, threads=(1,), cold_runs=1, original_runs=2, original_cold_runs=1,
                    stream_seconds=6.0)
        base.update(changes)
        return cls(**base)


@dataclass
class ModelResult:
    model: str
    threads: int
    e2e_ms: dict[str, float]
    stages_ms: dict[str, dict[str, float]]
    cold_start_ms: float | None
    peak_rss_mb: float | None
    stream_cpu_percent: float | None
    model_size_kb: float | None
    load_ms: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


# ---------------------------------------------------------------------------------------------------
# Environment


def machine_info() -> dict[str, Any]:
    """CPU model, core count and the versions that decide the speed of the runtime."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    cpu = value.strip()
                    break
    except OSError:
        pass
    import onnxruntime

    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        # Other work on the machine inflates every figure; the 1-minute load average says how busy it was.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _repo_root() -> Path | None:
    """The source checkout gvd runs from, if any (benchmarks/ and models/ live there)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "benchmarks").is_dir() else None


CLIP_EXTENSIONS = (".wav", ".flac", ".ogg")
MAX_CLIP_SECONDS = 6.0  # the default set is the short (~3-5 s) samples; longer ones are demos


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in CLIP_EXTENSIONS and p.is_file())


def default_clips() -> list[Path]:
    """The short bundled sample clips: the wheel's edge/_models/samples, else the checkout's models/samples."""
    import soundfile as sf

    candidates = [Path(__file__).resolve().parent / "_models" / "samples"]
    if _repo_root() is not None:
        candidates.append(_repo_root() / "models" / "samples")
    for folder in candidates:
        if folder.is_dir():
            clips = [p for p in _audio_files(folder) if sf.info(str(p)).duration <= MAX_CLIP_SECONDS]
            if clips:
                return clips
    return []


def _expand_clips(items: tuple[Path, ...]) -> list[Path]:
    clips: list[Path] = []
    for item in items:
        clips += _audio_files(item) if item.is_dir() else [item]
    return clips


def _model_names(requested: tuple[str, ...]) -> list[str]:
    if requested:
        return list(requested)
    from .model import list_models

    return [entry["name"] for entry in list_models()]


def _model_file(detector: Any, spec: str) -> Path | None:
    """The .onnx file behind a detector, to report its size."""
    for attribute in ("path", "model_path"):
        value = getattr(detector, attribute, None)
        if value and Path(value).is_file():
            return Path(value)
    if Path(spec).is_file():
        return Path(spec)
    from . import model as model_module

    for entry in model_module.list_models():
        if entry.get("name") == spec:
            for key in ("path", "file"):
                if entry.get(key):
                    candidate = Path(entry[key])
                    if candidate.is_file():
                        return candidate
                    folder = getattr(model_module, "MODELS_DIR", None) or getattr(model_module, "models_dir", None)
                    folder = folder() if callable(folder) else folder
                    if folder and (Path(folder) / entry[key]).is_file():
                        return Path(folder) / entry[key]
    return None


# ---------------------------------------------------------------------------------------------------
# Measurements


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {name: float(np.percentile(a, q)) for name, q in (("p50", 50), ("p95", 95), ("p99", 99))}


def measure_latency(detector: Any, clips: list[Path], runs: int, warmup: int) -> tuple[dict, dict, float]:
    """End-to-end wall time per clip (file on disk to Prediction), the detector's per-stage timings,
    and the mean number of analysis windows per clip (a 4 s clip is 2-3 overlapping 3 s windows)."""
    windows = []
    for _ in range(max(warmup, 1)):
        for clip in clips:
            windows.append(len(detector.predict(clip).segments))
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    with click.progressbar(length=runs * len(clips), label="  latency", file=sys.stderr) as bar:
        for _ in range(runs):
            for clip in clips:
                start = time.perf_counter()
                prediction = detector.predict(clip)
                totals.append((time.perf_counter() - start) * 1e3)
                for name in STAGES:
                    stages[name].append(float(prediction.timings_ms.get(name, 0.0)))
                bar.update(1)
    return (percentiles(totals), {name: percentiles(values) for name, values in stages.items()},
            float(np.mean(windows)))


def long_recording(clips: list[Path], seconds: float, folder: Path) -> Path:
    """A 48 kHz WAV of at least ``seconds`` made by repeating the clips, for the streaming measurement
    (48 kHz like a USB microphone, so the streaming resampler's cost is included)."""
    import soundfile as sf

    from .audio import load_audio, resample

    signal = np.concatenate([load_audio(clip)[0] for clip in clips])
    repeats = max(1, math.ceil(seconds * 16000 / max(signal.size, 1)))
    signal = np.tile(signal, repeats)[: max(int(seconds * 16000), signal.size)]
    path = folder / "stream.wav"
    sf.write(str(path), resample(signal, 16000, STREAM_RATE), STREAM_RATE)
    return path


def measure_stream(detector: Any, recording: Path) -> tuple[float, float | None]:
    """CPU time (all threads) per second of audio, as % of one core, streaming a file as ``gvd listen
    --input FILE --fast`` does: decoded block by block and fed in microphone-sized chunks."""
    from .audio import open_audio

    def run(limit_seconds: float | None) -> tuple[float, float]:
        stream = detector.stream()
        fed = 0
        cpu0 = time.process_time()
        info, blocks = open_audio(recording)
        rate = info.sample_rate
        chunk = int(STREAM_CHUNK_SECONDS * rate)
        for block in blocks:
            mono = block[:, 0]
            for start in range(0, mono.size, chunk):
                stream.feed(mono[start : start + chunk], rate)
                fed += min(chunk, mono.size - start)
                if limit_seconds is not None and fed >= limit_seconds * rate:
                    return time.process_time() - cpu0, fed / rate
        stream.flush()
        return time.process_time() - cpu0, fed / rate

    run(3.0)  # warm-up: first allocations, onnxruntime's first runs
    cpu, audio_seconds = run(None)
    hop = getattr(detector.stream(), "hop_seconds", None)
    return 100.0 * cpu / audio_seconds, hop


def _gvd_command() -> list[str]:
    script = Path(sys.executable).with_name("gvd")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edge"]


def _maxrss_mb(rusage: Any) -> float:
    # Linux reports kilobytes, macOS bytes.
    return rusage.ru_maxrss / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def timed_process(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float | None, str]:
    """Run a command; return (ms from launch to its first line of output, its peak RSS in MB, stdout)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    first = process.stdout.readline()
    first_ms = (time.perf_counter() - start) * 1e3
    rest = process.stdout.read()
    errors = process.stderr.read()
    peak: float | None = None
    if hasattr(os, "wait4"):
        _, status, rusage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        peak = _maxrss_mb(rusage)
    else:  # pragma: no cover - Windows
        process.wait()
    if process.returncode != 0:
        raise click.ClickException(f"{' '.join(command)} failed ({process.returncode}): {errors.strip()[-800:]}")
    return first_ms, peak, first + rest


def measure_cold_start(spec: str, threads: int, clip: Path, runs: int, threads_option: bool) -> tuple[float, float]:
    """Median time of a new ``gvd predict --json`` process to its first result, and its peak RSS."""
    command = _gvd_command() + ["predict", "--json", "--model", spec]
    if threads_option:
        command += ["--threads", str(threads)]
    command.append(str(clip))
    times, peaks = [], []
    for _ in range(runs):
        ms, peak, _ = timed_process(command)
        times.append(ms)
        if peak is not None:
            peaks.append(peak)
    return float(np.median(times)), (max(peaks) if peaks else None)


def _predict_has_threads() -> bool:
    from .cli import _load

    command = _load("edge.commands:predict")
    return any("--threads" in getattr(param, "opts", ()) for param in command.params)


def measure_model(spec: str, threads: int, clips: list[Path], recording: Path, options: BenchOptions,
                  threads_option: bool) -> ModelResult:
    from .detector import Detector

    from . import model as model_module

    clear_cache = getattr(model_module, "clear_cache", lambda: None)
    Detector(spec, threads=threads)  # first construction pays for imports; not part of load time
    loads = []
    for _ in range(3):
        clear_cache()  # sessions are cached per process: time a real load (verify + open the session)
        start = time.perf_counter()
        detector = Detector(spec, threads=threads)
        loads.append((time.perf_counter() - start) * 1e3)
    file = _model_file(detector, spec)
    e2e, stages, windows = measure_latency(detector, clips, options.runs, options.warmup)
    stream_percent, hop = measure_stream(detector, recording)
    click.echo("  cold start ...", err=True)
    cold, peak = measure_cold_start(spec, threads, clips[0], options.cold_runs, threads_option)
    return ModelResult(
        model=getattr(detector, "name", spec), threads=threads, e2e_ms=e2e, stages_ms=stages,
        cold_start_ms=cold, peak_rss_mb=peak, stream_cpu_percent=stream_percent,
        model_size_kb=file.stat().st_size / 1024 if file else None, load_ms=float(np.median(loads)),
        extra={"cell": detector.metadata.cell, "windows_per_clip": windows, "stream_hop_seconds": hop,
               "cold_start_threads_applied": threads_option},
    )


def profile_model(spec: str, clips: list[Path], runs: int, out: Path) -> Path:
    """cProfile of the latency loop, top functions by cumulative time, to see which stage costs what."""
    import cProfile
    import io
    import pstats

    from .detector import Detector

    detector = Detector(spec, threads=1)
    for clip in clips:
        detector.predict(clip)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        for clip in clips:
            detector.predict(clip)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    path = out / "raw" / f"profile_{Path(spec).stem}.txt"  # raw/: machine-specific, not for the repository
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# cProfile of {runs} runs x {len(clips)} clips, model {spec}, 1 thread\n" + text.getvalue())
    return path


# ---------------------------------------------------------------------------------------------------
# The original pipeline, in a subprocess (it imports TensorFlow and librosa)


def _original_script() -> Path | None:
    root = _repo_root()
    script = root / "benchmarks" / ORIGINAL_SCRIPT if root else None
    return script if script and script.is_file() else None


def _original_available() -> str | None:
    """None when the original pipeline can run, else why not."""
    if _original_script() is None:
        return "benchmarks/original_pipeline.py is only in a source checkout of gvd"
    import importlib.util

    missing = [m for m in ("tensorflow", "keras", "librosa", "noisereduce") if importlib.util.find_spec(m) is None]
    if missing:
        return f"the original pipeline needs the [train] extra (missing: {', '.join(missing)})"
    return None


def measure_original(cell: str, clips: list[Path], options: BenchOptions) -> ModelResult:
    script = _original_script()
    base = [sys.executable, str(script), "--cell", cell, "--threads", "1"]
    if options.keras_dir is not None:
        base += ["--keras-dir", str(options.keras_dir)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    click.echo(f"  original pipeline ({cell}, 1 thread): latency ...", err=True)
    _, _, out = timed_process(base + ["bench", "--runs", str(options.original_runs),
                                      "--warmup", str(max(1, min(options.warmup, 2))),
                                      "--clips", *map(str, clips)], env)
    bench = json.loads(out.strip().splitlines()[-1])
    click.echo("  original pipeline: cold start ...", err=True)
    times, peaks = [], []
    for _ in range(options.original_cold_runs):
        ms, peak, _ = timed_process(base + ["once", str(clips[0])], env)
        times.append(ms)
        if peak is not None:
            peaks.append(peak)
    click.echo("  original pipeline: streaming ...", err=True)
    _, _, out = timed_process(base + ["stream", str(clips[0]), "--seconds",
                                      str(min(options.stream_seconds, 20.0))], env)
    stream = json.loads(out.strip().splitlines()[-1])
    return ModelResult(
        model=bench["model"], threads=1, e2e_ms=bench["e2e_ms"], stages_ms=bench["stages_ms"],
        cold_start_ms=float(np.median(times)), peak_rss_mb=max(peaks) if peaks else None,
        stream_cpu_percent=stream["stream_cpu_percent"], model_size_kb=bench["model_size_kb"],
        load_ms=bench["load_ms"],
        extra={"cell": cell, "note": bench["note"], "stream_hop_seconds": stream["hop_seconds"],
               "stream_note": "the original recipe re-run on the last 3 s every hop (it had no streaming mode)"},
    )


# ---------------------------------------------------------------------------------------------------
# The whole run and its reports


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Measure everything; return the report as a JSON-ready dict."""
    clips = _expand_clips(options.clips) if options.clips else default_clips()
    if not clips:
        raise click.ClickException("no clips to measure: pass --clips (the bundled samples were not found)")
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        raise click.ClickException(f"clips not found: {', '.join(missing)}")
    names = _model_names(options.models)
    if not names:
        raise click.ClickException("no models to measure: pass --models")
    threads_option = _predict_has_threads()
    clips, silent = _speech_clips(names[0], clips)
    report: dict[str, Any] = {
        "target_ms": TARGET_MS,
        "machine": machine_info(),
        "settings": {"runs": options.runs, "warmup": options.warmup, "threads": list(options.threads),
                     "clips": [c.name for c in clips], "cold_runs": options.cold_runs,
                     "stream_seconds": options.stream_seconds, "stream_chunk_seconds": STREAM_CHUNK_SECONDS,
                     "stream_rate": STREAM_RATE},
        "results": [],
        "original": None,
        "speedup": None,
        "notes": [],
    }
    if silent:
        report["notes"].append(f"not timed, no speech detected (the pipeline stops early on them): {', '.join(silent)}")
    if not threads_option:
        report["notes"].append("gvd predict has no --threads option: cold start ran with its default threads")
    with tempfile.TemporaryDirectory(prefix="gvd-bench-") as tmp:
        recording = long_recording(clips, options.stream_seconds, Path(tmp))
        for name in names:
            for threads in options.threads:
                click.echo(f"{name}, {threads} thread{'s' if threads > 1 else ''}:", err=True)
                report["results"].append(
                    measure_model(name, threads, clips, recording, options, threads_option).to_dict())
    if options.profile:
        options.out.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = profile_model(name, clips, max(options.runs // 5, 3), options.out)
            report["notes"].append(f"profile of {name}: {path}")
    if options.original:
        why_not = _original_available()
        if why_not:
            report["notes"].append(f"original pipeline skipped: {why_not}")
        else:
            ours = _reference(report["results"])
            original = measure_original(ours["cell"], clips, options).to_dict()
            report["original"] = original
            report["speedup"] = {
                "against": f"{ours['model']}, {ours['threads']} thread",
                "e2e": _ratio(original["e2e_ms"]["p50"], ours["e2e_ms"]["p50"]),
                "cold_start": _ratio(original["cold_start_ms"], ours["cold_start_ms"]),
                "memory": _ratio(original["peak_rss_mb"], ours["peak_rss_mb"]),
            }
    report["goals"] = goals(report)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    return report


def _speech_clips(spec: str, clips: list[Path]) -> tuple[list[Path], list[str]]:
    """The clips with speech, which run every stage; silent ones would flatter the latency figures."""
    from .detector import Detector

    detector = Detector(spec)
    speech = [clip for clip in clips if detector.predict(clip).label != "no_speech"]
    if not speech:  # e.g. a test model on synthetic audio: time what there is
        return clips, []
    return speech, [clip.name for clip in clips if clip not in speech]


def _reference(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Our row the original is compared with: the default model at one thread when measured."""
    try:
        from .model import list_models  # noqa: F401
        from .detector import Detector

        default = Detector(None).name
    except Exception:  # noqa: BLE001 - no manifest (a test model): fall back to the first row
        default = None
    for row in results:
        if row["model"] == default and row["threads"] == 1:
            return row
    ones = [row for row in results if row["threads"] == 1]
    return (ones or results)[0]


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each project goal with the figure measured for it (default model, one thread)."""
    if not report["results"]:
        return []
    ours = _reference(report["results"])
    speedup = report.get("speedup") or {}
    rows = [
        ("e2e p50 per clip (ms)", "<=", GOALS["e2e_p50_ms"], ours["e2e_ms"]["p50"]),
        ("e2e p99 per clip (ms)", "<=", GOALS["e2e_p99_ms"], ours["e2e_ms"]["p99"]),
        ("e2e p99 vs the 200 ms target (ms)", "<=", TARGET_MS, ours["e2e_ms"]["p99"]),
        ("streaming, % of one core", "<=", GOALS["stream_cpu_percent"], ours["stream_cpu_percent"]),
        ("e2e speed-up vs original (x)", ">=", GOALS["speedup_e2e"], speedup.get("e2e")),
        ("cold-start speed-up vs original (x)", ">=", GOALS["speedup_cold_start"], speedup.get("cold_start")),
        ("peak memory ratio original/ours (x)", ">=", GOALS["speedup_memory"], speedup.get("memory")),
    ]
    out = []
    for name, op, goal, value in rows:
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        out.append({"goal": name, "target": f"{op} {goal:g}", "measured": value, "met": met,
                    "model": ours["model"], "threads": ours["threads"]})
    return out


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}{unit}"
    return f"{value:.{digits}f}{unit}"


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = list(report["results"])
    if report.get("original"):
        rows.append(report["original"])
    return rows


TABLE_COLUMNS = ("model", "thr", "e2e p50", "p95", "p99", "x under 200ms", "decode", "resample", "clean",
                 "features", "inference", "cold start", "peak RSS", "stream CPU", "size", "load")


def table_cells(row: dict[str, Any]) -> list[str]:
    stages = row["stages_ms"]
    headroom = TARGET_MS / row["e2e_ms"]["p99"] if row["e2e_ms"]["p99"] > 0 else None
    return [
        row["model"], str(row["threads"]),
        _fmt(row["e2e_ms"]["p50"], 2, " ms"), _fmt(row["e2e_ms"]["p95"], 2), _fmt(row["e2e_ms"]["p99"], 2),
        _fmt(headroom, 0 if headroom and headroom >= 10 else 1, "x"),
        *[_fmt(stages.get(s, {}).get("p50"), 2) for s in STAGES],
        _fmt(row["cold_start_ms"], 0, " ms"), _fmt(row["peak_rss_mb"], 0, " MB"),
        _fmt(row["stream_cpu_percent"], 2, " %"), _fmt(row["model_size_kb"], 0, " kB"), _fmt(row["load_ms"], 1, " ms"),
    ]


def format_table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"gvd bench on {machine['cpu']} ({machine['cores']} cores, {machine['machine']}), Python {machine['python']}, "
        f"numpy {machine['numpy']}, onnxruntime {machine['onnxruntime']}",
        f"per clip, file on disk to result, {report['settings']['runs']} runs x "
        f"{len(report['settings']['clips'])} clips after {report['settings']['warmup']} warm-up runs; "
        f"target {report['target_ms']:.0f} ms; stages are p50 in ms",
    ]
    if machine.get("load_average_1min") is not None:
        lines.append(f"load average (1 min) {machine['load_average_1min']:.1f} at the start, "
                     f"{machine.get('load_average_1min_end', 0.0):.1f} at the end: figures are inflated on a busy machine")
    lines += [
        "",
    ]
    rows = [list(TABLE_COLUMNS)] + [table_cells(r) for r in _rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    if report.get("speedup"):
        s = report["speedup"]
        lines += ["", f"original / gvd ({s['against']}): e2e {_fmt(s['e2e'])}x faster, cold start "
                      f"{_fmt(s['cold_start'])}x faster, peak memory {_fmt(s['memory'])}x smaller"]
    if report.get("goals"):
        lines += ["", "goals (2-core x86, one thread):"]
        for g in report["goals"]:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
            lines.append(f"  {g['goal']:<40} {g['target']:>8}  measured {_fmt(g['measured'], 2):>8}  {verdict}")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    if report.get("original") and report["original"].get("note"):
        lines.append(f"note: original pipeline: {report['original']['note']}")
    return "\n".join(lines)


def _load_text(machine: dict[str, Any]) -> str:
    start, end = machine.get("load_average_1min"), machine.get("load_average_1min_end")
    if start is None:
        return ""
    return (f" Load average (1 min) {start:.1f} at the start and {end:.1f} at the end on "
            f"{machine['cores']} cores: above about 0.5 the figures are inflated by other work.")


def _windows_text(report: dict[str, Any]) -> str:
    counts = [r.get("windows_per_clip") for r in report["results"] if r.get("windows_per_clip")]
    return f" (on average {counts[0]:.1f} analysis windows of 3 s per clip)" if counts else ""


def format_markdown(report: dict[str, Any], chart: str | None) -> str:
    machine = report["machine"]
    settings = report["settings"]
    out = [
        "# gvd benchmark",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['machine']}), {machine['os']}; "
        f"Python {machine['python']}, numpy {machine['numpy']}, onnxruntime {machine['onnxruntime']}."
        + _load_text(machine),
        "",
        f"Clips: {', '.join(settings['clips'])}{_windows_text(report)}. Latency = file on disk to result, "
        f"{settings['runs']} runs per "
        f"clip after {settings['warmup']} warm-up runs. Stages are p50 of the detector's own timings. "
        f"Cold start = a new `gvd predict --json` process from launch to its first result (median of "
        f"{settings['cold_runs']}); peak RSS of that process. Stream CPU = CPU time per second of audio "
        f"while streaming a {settings['stream_seconds']:.0f} s, {settings['stream_rate'] // 1000} kHz file in "
        f"{settings['stream_chunk_seconds']} s chunks at the default hop, "
        "as % of one core. Target: 200 ms per clip.",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(TABLE_COLUMNS))) + "|",
    ]
    out += ["| " + " | ".join(table_cells(r)) + " |" for r in _rows(report)]
    if report.get("speedup"):
        s = report["speedup"]
        out += ["", f"**Original ÷ gvd** ({s['against']}): end to end **{_fmt(s['e2e'])}x** faster, cold start "
                    f"**{_fmt(s['cold_start'])}x** faster, peak memory **{_fmt(s['memory'])}x** smaller."]
    if report.get("goals"):
        out += ["", "| goal | target | measured | |", "|---|---:|---:|---|"]
        for g in report["goals"]:
            verdict = {True: "met", False: "**missed**", None: "not measured"}[g["met"]]
            out.append(f"| {g['goal']} | {g['target']} | {_fmt(g['measured'], 2)} | {verdict} |")
    notes = list(report.get("notes", []))
    if report.get("original"):
        notes.append(f"original pipeline: {report['original'].get('note', '')}")
        notes.append(f"original streaming: {report['original'].get('stream_note', '')}")
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    if chart:
        out += ["", f"![per-stage latency]({chart})"]
    out += ["", f"Reproduce: `{settings.get('command', 'gvd bench')}` (see benchmarks/README.md for the options).", ""]
    return "\n".join(out)


def write_chart(report: dict[str, Any], path: Path) -> str | None:
    """Per-stage p50 latency bars with the 200 ms line; None (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report["notes"].append("no chart: matplotlib is not installed (pip install 'gvd[train]')")
        return None
    rows = _rows(report)
    labels = [f"{r['model']}\n{r['threads']} thr" for r in rows]
    series = list(STAGES) + ["e2e"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.5))
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        values = [(r["e2e_ms"]["p50"] if name == "e2e" else r["stages_ms"].get(name, {}).get("p50", 0.0)) or 0.0
                  for r in rows]
        positions = [x + (i - len(series) / 2 + 0.5) * width for x in range(len(rows))]
        # A stage that takes no time (e.g. no resampling for 16 kHz input) gets no bar on a log axis.
        ax.bar(positions, [v if v > 0 else float("nan") for v in values], width, label=name,
               color="black" if name == "e2e" else None)
    ax.axhline(TARGET_MS, color="red", linestyle="--", label="200 ms target")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.05, top=TARGET_MS * 5)
    ax.set_ylabel("ms per clip (p50, log scale)")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_title(f"Latency per stage, {report['machine']['cpu']} ({report['machine']['cores']} cores)", fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _finite(report: Any) -> Any:
    """JSON cannot hold NaN/inf: report them as null."""
    if isinstance(report, dict):
        return {k: _finite(v) for k, v in report.items()}
    if isinstance(report, list):
        return [_finite(v) for v in report]
    if isinstance(report, float) and not math.isfinite(report):
        return None
    return report


def write_reports(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    chart = write_chart(report, out / "bench.png")
    paths = {"json": out / "bench.json", "markdown": out / "bench.md"}
    paths["json"].write_text(json.dumps(_finite(report), indent=2) + "\n")
    paths["markdown"].write_text(format_markdown(report, chart))
    if chart:
        paths["chart"] = out / chart
    return paths


def _command_line() -> str:
    """How this run was started, for the report's 'reproduce' line."""
    import shlex

    args = sys.argv[1:]
    if "bench" in args:
        args = args[args.index("bench") + 1 :]
    return " ".join(["gvd", "bench", *map(shlex.quote, args)])


def _default_out() -> Path:
    root = _repo_root()
    if root is not None and Path.cwd().resolve() == root:
        return Path("benchmarks/results")
    return Path("gvd-bench")


@click.command("bench")
@click.option("--runs", type=click.IntRange(1), default=None, help="timed runs per clip [50; --quick 3]")
@click.option("--warmup", type=click.IntRange(0), default=None, help="untimed runs per clip first [5; --quick 1]")
@click.option("--threads", "threads_text", default=None, metavar="LIST",
              help="comma-separated onnxruntime thread counts [1,2; --quick 1]")
@click.option("--models", "models_text", default=None, metavar="LIST",
              help="comma-separated model names or .onnx paths [every shipped model]")
@click.option("--clips", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="clip, or folder of .wav/.flac clips; repeatable [the short bundled samples]")
@click.option("--no-original", is_flag=True, help="skip the original librosa/noisereduce/Keras pipeline")
@click.option("--keras-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=lambda: os.environ.get("GVD_KERAS_DIR"), show_default="$GVD_KERAS_DIR",
              help="folder with <cell>/model.keras: the trained weights the shipped ONNX came from")
@click.option("--profile", is_flag=True, help="also write a cProfile of each model's latency loop to OUT/raw/")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for bench.json, bench.md and bench.png [benchmarks/results in a checkout, else ./gvd-bench]")
@click.option("--quick", is_flag=True, help="a few seconds' run for smoke tests (noisy numbers)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON instead of a table")
def bench(runs, warmup, threads_text, models_text, clips, no_original, keras_dir, profile, out, quick, as_json):
    """Measure latency, streaming CPU, cold start and memory of the models on this machine.

    Compares them, in the same run, with the original librosa + noisereduce + Keras pipeline
    on the same clips (needs the [train] extra; skipped with a note otherwise).
    """
    changes: dict[str, Any] = {"original": not no_original, "profile": profile,
                               "out": out or _default_out(), "keras_dir": Path(keras_dir) if keras_dir else None}
    if runs is not None:
        changes["runs"] = runs
    if warmup is not None:
        changes["warmup"] = warmup
    if threads_text:
        try:
            changes["threads"] = tuple(int(t) for t in threads_text.split(",") if t.strip())
        except ValueError:
            raise click.BadParameter(f"expected numbers like 1,2, got {threads_text!r}", param_hint="--threads")
        if not changes["threads"] or min(changes["threads"]) < 1:
            raise click.BadParameter("thread counts must be 1 or more", param_hint="--threads")
    if models_text:
        changes["models"] = tuple(m.strip() for m in models_text.split(",") if m.strip())
    if clips:
        changes["clips"] = tuple(clips)
    options = BenchOptions.quick(**changes) if quick else BenchOptions(**changes)
    report = run_bench(options)
    report["settings"]["command"] = _command_line()
    paths = write_reports(report, options.out)
    if as_json:
        click.echo(json.dumps(_finite(report), indent=2))
    else:
        click.echo(format_table(report))
        click.echo("\nwrote " + ", ".join(str(p) for p in paths.values()))
