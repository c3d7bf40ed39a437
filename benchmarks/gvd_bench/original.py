"""The original pipeline's side, run as subprocesses of ``benchmarks/original_pipeline.py``.

It imports TensorFlow, librosa and noisereduce (the ``[train]`` extra), so gvd never runs it in its
own process. The script and its committed Keras weights live in a source checkout of gvd.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from .report import LengthCost, Percentiles, SideResult, StageTime, Throughput, Weights
from .runs import Plan, Recordings, sha256
from .timing import run_process

BENCHMARKS = Path(__file__).resolve().parent.parent
SCRIPT = BENCHMARKS / "original_pipeline.py"
DEFAULT_KERAS = BENCHMARKS / "original" / "lstm.keras"
NEEDS = ("tensorflow", "keras", "librosa", "noisereduce")


@dataclass(frozen=True)
class OriginalPlan:
    keras: Path
    max_length_seconds: float  # longer clips take minutes and gigabytes in the original pipeline
    runs: int
    warmup: int


def unavailable(keras: Path) -> str | None:
    """None when the original pipeline can run here, else why not."""
    if not SCRIPT.is_file():
        return f"{SCRIPT.name} is only in a source checkout of gvd"
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        return f"it needs the [train] extra (missing: {', '.join(missing)})"
    if not keras.is_file():
        return f"no Keras model at {keras}"
    return None


def weights(keras: Path) -> Weights:
    """The Keras file, and what its sidecar ``<name>.json`` says about where the weights came from."""
    sidecar = keras.with_suffix(".json")
    description = "Keras model (no provenance file beside it)"
    if sidecar.is_file():
        description = str(json.loads(sidecar.read_text())["description"])
    return Weights(path=str(keras), sha256=sha256(keras), description=description)


def _base(keras: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    return [sys.executable, str(SCRIPT), "--keras", str(keras), "--threads", "1"], env


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _percentiles(data: dict) -> Percentiles:
    return Percentiles(float(data["p50"]), float(data["p90"]), float(data["p99"]))


def measure(recordings: Recordings, plan: Plan, original: OriginalPlan, notes: list[str]) -> SideResult:
    base, env = _base(original.keras)
    lengths = [p for p in recordings.lengths if _seconds(p) <= original.max_length_seconds]
    skipped = [f"{_seconds(p):g} s" for p in recordings.lengths if p not in lengths]
    if skipped:
        notes.append(f"original pipeline not run on the {', '.join(skipped)} clip(s): longer than "
                     f"--original-max-seconds {original.max_length_seconds:g}")
    click.echo("original pipeline (1 thread): latency, lengths, streaming ...", err=True)
    data = _last_json(run_process(base + [
        "measure", "--runs", str(original.runs), "--warmup", str(original.warmup),
        "--clips", *map(str, recordings.clips), "--length-budget", str(plan.length_budget_seconds),
        "--stream-clip", str(recordings.stream), "--stream-seconds", str(min(plan.stream_seconds, 20.0)),
        *(["--length-clips", *map(str, lengths)] if lengths else []),
    ], env).stdout)
    click.echo("original pipeline: cold start, throughput ...", err=True)
    cold = [run_process(base + ["once", str(recordings.clips[0])], env) for _ in range(max(1, min(plan.cold_runs, 3)))]
    peaks = [run.peak_rss_mb for run in cold if run.peak_rss_mb is not None]
    return SideResult(
        name="original lstm", weights=weights(original.keras), threads=1,
        e2e_ms=_percentiles(data["e2e_ms"]),
        stages=[StageTime(name, _percentiles(ms)) for name, ms in data["stages_ms"].items()],
        realtime_factor=data["realtime_factor"],
        lengths=[LengthCost(float(c["seconds"]), int(c["runs"]), float(c["ms_per_clip"]),
                            float(c["ms_per_clip"]) / float(c["seconds"])) for c in data["lengths"]],
        throughput=[_throughput(base, env, recordings.batch, jobs) for jobs in plan.jobs],
        cold_start_ms=statistics.median(run.first_output_ms for run in cold),
        peak_rss_mb=max(peaks) if peaks else None,
        stream_cpu_percent=data["stream_cpu_percent"], stream_hop_seconds=data["stream_hop_seconds"],
        load_ms=data["load_ms"], model_size_kb=original.keras.stat().st_size / 1024,
    )


def _throughput(base: list[str], env: dict[str, str], files: list[Path], jobs: int) -> Throughput:
    run = run_process(base + ["batch", "--jobs", str(jobs), *map(str, files)], env)
    summary = _last_json(run.stdout)
    wall = run.wall_ms / 1e3
    return Throughput(jobs, int(summary["files"]), float(summary["audio_seconds"]), wall,
                      int(summary["files"]) / wall, float(summary["audio_seconds"]) / wall)


def _seconds(path: Path) -> float:
    from .clips import duration

    return duration(path)
