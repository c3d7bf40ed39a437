"""gvd's side of the benchmark: every figure for one model, measured in this process or in new ones."""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from . import clips as clip_files
from .report import LengthCost, Percentiles, SideResult, StageTime, Throughput, Weights
from .timing import gvd_command, run_process

STREAM_CHUNK_SECONDS = 0.1  # what a microphone callback typically delivers


@dataclass(frozen=True)
class Plan:
    """How much to measure; ``quick()`` is a few seconds' smoke run with noisy numbers."""

    runs: int = 50
    warmup: int = 5
    threads: int = 1
    lengths: tuple[float, ...] = (1.0, 3.0, 10.0, 60.0, 3600.0)
    length_budget_seconds: float = 10.0  # per length: at least one run, at most ``runs``
    jobs: tuple[int, ...] = (1, 2)
    batch_files: int = 100
    cold_runs: int = 5
    stream_seconds: float = 60.0

    @classmethod
    def quick(cls, **changes) -> Plan:
        base = dict(runs=3, warmup=1, lengths=(1.0, 3.0), length_budget_seconds=2.0, jobs=(1,), batch_files=4,
                    cold_runs=1, stream_seconds=6.0)
        return cls(**{**base, **changes})


@dataclass(frozen=True)
class Recordings:
    """The files every side is measured on."""

    clips: list[Path]  # short clips with speech: latency, stages, cold start
    lengths: list[Path]  # one per plan length, same content
    batch: list[Path]  # throughput
    stream: Path  # 48 kHz, streamed in microphone-sized chunks


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights(detector) -> Weights:
    metadata = detector.metadata
    return Weights(path=str(detector.path), sha256=sha256(Path(detector.path)),
                   description=f"gvd ONNX model {detector.name!r}: {metadata.cell}, version {metadata.model_version}")


def _load_ms(spec: str, threads: int) -> float:
    """Verify and open the model (sessions are cached per process: the cache is cleared each time)."""
    from edge import model as model_module
    from edge.detector import Detector

    times = []
    for _ in range(3):
        model_module.clear_cache()
        start = time.perf_counter()
        Detector(spec, threads=threads)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def latency(detector, clips: list[Path], plan: Plan) -> tuple[Percentiles, list[StageTime], float, float]:
    """Wall time per clip (file on disk to Prediction), the detector's stage split, the real-time factor
    (audio seconds per CPU second) and the mean number of analysis windows per clip."""
    windows = [len(detector.predict(clip).segments) for _ in range(max(plan.warmup, 1)) for clip in clips]
    totals: list[float] = []
    stages: dict[str, list[float]] = {}  # the detector's own stages, in its order
    audio_seconds = 0.0
    cpu0 = time.process_time()
    with click.progressbar(length=plan.runs * len(clips), label="  latency", file=sys.stderr) as bar:
        for _ in range(plan.runs):
            for clip in clips:
                start = time.perf_counter()
                prediction = detector.predict(clip)
                totals.append((time.perf_counter() - start) * 1e3)
                audio_seconds += prediction.duration
                for name, ms in prediction.timings_ms.items():
                    if name != "total":
                        stages.setdefault(name, []).append(float(ms))
                bar.update(1)
    cpu = time.process_time() - cpu0
    return (Percentiles.of(totals), [StageTime(n, Percentiles.of(v)) for n, v in stages.items()],
            audio_seconds / cpu if cpu > 0 else float("nan"), float(np.mean(windows)))


def length_costs(detector, files: list[Path], plan: Plan) -> list[LengthCost]:
    costs = []
    for path in files:
        if clip_files.duration(path) <= 60:  # a warm-up run where it is cheap
            detector.predict(path)
        times: list[float] = []
        seconds = 0.0
        spent = time.perf_counter()
        while len(times) < plan.runs and (not times or time.perf_counter() - spent < plan.length_budget_seconds):
            start = time.perf_counter()
            seconds = detector.predict(path).duration
            times.append((time.perf_counter() - start) * 1e3)
        median = statistics.median(times)
        costs.append(LengthCost(seconds, len(times), median, median / seconds))
        click.echo(f"  {seconds:g} s clip: {median:.1f} ms ({len(times)} runs)", err=True)
    return costs


def stream_cpu_percent(detector, recording: Path) -> tuple[float, float]:
    """CPU time (all threads) per second of audio as % of one core, feeding 0.1 s chunks of a 48 kHz
    recording, as a microphone does, at the stream's default hop; and that hop."""
    import soundfile as sf

    samples, rate = sf.read(str(recording), dtype="float32")
    chunk = int(STREAM_CHUNK_SECONDS * rate)

    def feed(limit: int) -> float:
        stream = detector.stream()
        cpu0 = time.process_time()
        for start in range(0, limit, chunk):
            stream.feed(samples[start : min(start + chunk, limit)], rate)
        stream.flush()
        return time.process_time() - cpu0

    feed(min(samples.size, 3 * rate))  # warm-up: first allocations, onnxruntime's first runs
    cpu = feed(samples.size)
    return 100.0 * cpu / (samples.size / rate), float(detector.stream().hop_seconds)


def cold_start(spec: str, threads: int, clip: Path, runs: int) -> tuple[float, float | None]:
    """Median time of a new ``gvd predict --json`` process to its first result, and its peak RSS."""
    command = gvd_command() + ["predict", "--json", "--model", spec, "--threads", str(threads), str(clip)]
    done = [run_process(command) for _ in range(runs)]
    peaks = [run.peak_rss_mb for run in done if run.peak_rss_mb is not None]
    return statistics.median(run.first_output_ms for run in done), (max(peaks) if peaks else None)


def throughput(spec: str, threads: int, files: list[Path], jobs: int) -> Throughput:
    """``gvd predict --jobs N`` over a batch: files and audio seconds per wall second, launch to exit."""
    command = gvd_command() + ["predict", "--json", "--model", spec, "--threads", str(threads), "--jobs", str(jobs),
                               *map(str, files)]
    run = run_process(command)
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    audio = sum(float(r.get("duration") or 0.0) for r in records)
    wall = run.wall_ms / 1e3
    return Throughput(jobs, len(records), audio, wall, len(records) / wall, audio / wall)


def measure(spec: str, recordings: Recordings, plan: Plan) -> SideResult:
    from edge.detector import Detector

    detector = Detector(spec, threads=plan.threads)
    name = detector.name
    load_ms = _load_ms(spec, plan.threads)
    click.echo(f"gvd {name}, {plan.threads} thread(s):", err=True)
    e2e, stages, rtf, windows = latency(detector, recordings.clips, plan)
    lengths = length_costs(detector, recordings.lengths, plan)
    click.echo("  streaming, cold start, throughput ...", err=True)
    stream_percent, hop = stream_cpu_percent(detector, recordings.stream)
    cold_ms, peak_mb = cold_start(spec, plan.threads, recordings.clips[0], plan.cold_runs)
    batches = [throughput(spec, plan.threads, recordings.batch, jobs) for jobs in plan.jobs]
    return SideResult(
        name=f"gvd {name}", weights=weights(detector), threads=plan.threads, e2e_ms=e2e, stages=stages,
        realtime_factor=rtf, lengths=lengths, throughput=batches, cold_start_ms=cold_ms, peak_rss_mb=peak_mb,
        stream_cpu_percent=stream_percent, stream_hop_seconds=hop, load_ms=load_ms,
        model_size_kb=Path(detector.path).stat().st_size / 1024, windows_per_clip=windows,
    )


def speech_clips(spec: str, clips: list[Path]) -> tuple[list[Path], list[str]]:
    """The clips with speech, which run every stage; silent ones would flatter the latency figures."""
    from edge.detector import Detector

    detector = Detector(spec)
    speech = [clip for clip in clips if detector.predict(clip).label != "no_speech"]
    if not speech:  # e.g. a test model on synthetic audio: time what there is
        return clips, []
    return speech, [clip.name for clip in clips if clip not in speech]


def profile(spec: str, clips: list[Path], runs: int, out: Path) -> Path:
    """cProfile of the latency loop, top functions by own and cumulative time (OUT/raw/, not committed)."""
    import cProfile
    import io
    import pstats

    from edge.detector import Detector

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
    path = out / "raw" / f"profile_{Path(spec).stem}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# cProfile of {runs} runs x {len(clips)} clips, model {spec}, 1 thread\n" + text.getvalue())
    return path
