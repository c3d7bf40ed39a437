"""One benchmark run: pick the clips, measure gvd and the original pipeline, compare, check the goals."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import click

from . import clips as clip_files
from . import original as original_side
from . import runs
from .report import SCHEMA_VERSION, Goal, Ratio, Report, Settings, SideResult
from .timing import load_average, machine

# The project's goals for one thread on a 2-core x86 machine (see benchmarks/README.md).
GOAL_E2E_P50_MS = 5.0
GOAL_E2E_P99_MS = 10.0
GOAL_SPEEDUP = 30.0
GOAL_COLD_START_MS = 200.0
GOAL_STREAM_PERCENT = 0.5
GOAL_PEAK_RSS_MB = 64.0


@dataclass(frozen=True)
class Request:
    plan: runs.Plan
    models: tuple[str, ...]  # empty: the default shipped model
    clips: tuple[Path, ...]  # empty: the bundled samples
    original: original_side.OriginalPlan | None  # None: --no-original
    command: str
    profile_out: Path | None = None


def run(request: Request) -> Report:
    load_start = load_average()
    notes: list[str] = []
    plan = _capped(request.plan, notes)
    specs = list(request.models) or [_default_model()]
    clips = clip_files.expand(request.clips) if request.clips else clip_files.bundled()
    if not clips:
        raise click.ClickException("no clips to measure: pass --clips (the bundled samples were not found)")
    clips, silent = runs.speech_clips(specs[0], clips)
    if silent:
        notes.append(f"not timed, no speech detected (the pipeline stops early on them): {', '.join(silent)}")
    with tempfile.TemporaryDirectory(prefix="gvd-bench-") as tmp:
        click.echo(f"writing test recordings ({', '.join(f'{s:g} s' for s in plan.lengths)}) ...", err=True)
        recordings = runs.Recordings(
            clips=clips, lengths=clip_files.length_clips(clips, plan.lengths, Path(tmp)),
            batch=clip_files.batch(clips, plan.batch_files),
            stream=clip_files.stream_recording(clips, plan.stream_seconds, Path(tmp)))
        results = [runs.measure(spec, recordings, plan) for spec in specs]
        original = _original(request.original, recordings, plan, notes)
    if request.profile_out is not None:
        for spec in specs:
            notes.append(f"profile of {spec}: {runs.profile(spec, clips, max(plan.runs // 5, 3), request.profile_out)}")
    settings = Settings(
        command=request.command, runs=plan.runs, warmup=plan.warmup, threads=plan.threads,
        clips=[c.name for c in clips], clip_seconds=[round(clip_files.duration(c), 3) for c in clips],
        lengths_seconds=list(plan.lengths), length_clip_format=f"{clip_files.LENGTH_RATE // 1000} kHz mono FLAC",
        batch_files=plan.batch_files, cold_runs=plan.cold_runs, stream_seconds=plan.stream_seconds,
        stream_chunk_seconds=runs.STREAM_CHUNK_SECONDS, stream_rate=clip_files.STREAM_RATE)
    return Report(schema=SCHEMA_VERSION, machine=machine(load_start), settings=settings, gvd=results,
                  original=original, comparison=compare(results[0], original, plan),
                  goals=goals(results[0], original, plan), notes=notes)


def _default_model() -> str:
    from edge.detector import Detector

    return Detector(None).name


def _capped(plan: runs.Plan, notes: list[str]) -> runs.Plan:
    """Batch jobs beyond the CPU count only measure the scheduler: leave them out, and say so."""
    cores = os.cpu_count() or 1
    jobs = tuple(sorted({min(j, cores) for j in plan.jobs}))
    if jobs != tuple(sorted(set(plan.jobs))):
        notes.append(f"--jobs capped at the {cores} CPUs of this machine")
    return replace(plan, jobs=jobs)


def _original(plan: original_side.OriginalPlan | None, recordings: runs.Recordings, run_plan: runs.Plan,
              notes: list[str]) -> SideResult | None:
    if plan is None:
        notes.append("original pipeline not measured (--no-original)")
        return None
    why_not = original_side.unavailable(plan.keras)
    if why_not:
        notes.append(f"original pipeline not measured: {why_not}")
        return None
    return original_side.measure(recordings, run_plan, plan, notes)


def compare(ours: SideResult, original: SideResult | None, plan: runs.Plan) -> list[Ratio]:
    """Each figure of both sides, and how many times better gvd is."""
    other = original

    def pick(side: SideResult | None, getter):
        return None if side is None else getter(side)

    rows = [
        Ratio.of("end to end per clip, p50", "ms", ours.e2e_ms.p50, pick(other, lambda s: s.e2e_ms.p50), True),
        Ratio.of("end to end per clip, p90", "ms", ours.e2e_ms.p90, pick(other, lambda s: s.e2e_ms.p90), True),
        Ratio.of("end to end per clip, p99", "ms", ours.e2e_ms.p99, pick(other, lambda s: s.e2e_ms.p99), True),
        Ratio.of("real-time factor", "audio s per CPU s", ours.realtime_factor,
                 pick(other, lambda s: s.realtime_factor), False),
    ]
    for seconds in plan.lengths:
        def cost(side: SideResult, seconds=seconds):
            found = side.length(seconds)
            return None if found is None else found.ms_per_audio_second
        rows.append(Ratio.of(f"cost of a {seconds:g} s clip per audio second", "ms/s", cost(ours),
                             pick(other, cost), True))
    for jobs in plan.jobs:
        def rate(side: SideResult, jobs=jobs):
            found = side.jobs(jobs)
            return None if found is None else found.audio_seconds_per_second
        rows.append(Ratio.of(f"batch throughput, {jobs} job(s)", "audio s per s", rate(ours), pick(other, rate), False))
    rows += [
        Ratio.of("cold start (new process to first result)", "ms", ours.cold_start_ms,
                 pick(other, lambda s: s.cold_start_ms), True),
        Ratio.of("peak RSS, one file", "MB", ours.peak_rss_mb, pick(other, lambda s: s.peak_rss_mb), True),
        Ratio.of(f"streaming CPU at the default {ours.stream_hop_seconds:g} s hop", "% of one core",
                 ours.stream_cpu_percent, pick(other, lambda s: s.stream_cpu_percent), True),
    ]
    return rows


def goals(ours: SideResult, original: SideResult | None, plan: runs.Plan) -> list[Goal]:
    """The project's goals with what this run measured (the reference model, one thread)."""
    speedup = Ratio.of("", "", ours.e2e_ms.p50, None if original is None else original.e2e_ms.p50, True).times_better
    long_clip, short_clip = ours.length(60.0), ours.length(3.0)
    growth = (long_clip.ms_per_audio_second / short_clip.ms_per_audio_second
              if long_clip and short_clip else None)
    rows = [
        ("end to end p50 per clip (ms)", "<=", GOAL_E2E_P50_MS, ours.e2e_ms.p50),
        ("end to end p99 per clip (ms)", "<=", GOAL_E2E_P99_MS, ours.e2e_ms.p99),
        ("end to end p50, times faster than the original", ">=", GOAL_SPEEDUP, speedup),
        ("cold start (ms)", "<=", GOAL_COLD_START_MS, ours.cold_start_ms),
        ("streaming, % of one core", "<=", GOAL_STREAM_PERCENT, ours.stream_cpu_percent),
        ("gvd predict one file, peak RSS (MB)", "<=", GOAL_PEAK_RSS_MB, ours.peak_rss_mb),
        ("cost per audio second, 60 s clip / 3 s clip", "<=", 1.0, growth),
    ]
    out = []
    for name, op, target, value in rows:
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append(Goal(name, f"{op} {target:g}", value, met))
    return out
