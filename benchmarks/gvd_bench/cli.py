"""The ``gvd bench`` click command. Only click is imported here: ``gvd --help`` imports every command."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

DEFAULT_OUT = Path("gvd-bench")


def _numbers(text: str | None, kind: type, option: str, minimum: float) -> tuple | None:
    if not text:
        return None
    try:
        values = tuple(kind(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list of numbers, got {text!r}",
                                 param_hint=option) from None
    if not values or min(values) < minimum:
        raise click.BadParameter(f"every value must be at least {minimum:g}, got {text!r}", param_hint=option)
    return values


def _command_line() -> str:
    """How this run was started, for the report's 'reproduce' line."""
    args = sys.argv[1:]
    if "bench" in args:
        args = args[args.index("bench") + 1 :]
    return " ".join(["gvd", "bench", *map(shlex.quote, args)])


@click.command("bench")
@click.option("--models", "models_text", default=None, metavar="LIST",
              help="comma-separated model names or .onnx paths; the first is compared [the default model]")
@click.option("--clips", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="clip, or folder of .wav/.flac/.ogg clips; repeatable [the short bundled samples]")
@click.option("--runs", type=click.IntRange(1), default=None, help="timed runs per clip [50; --quick 3]")
@click.option("--warmup", type=click.IntRange(0), default=None, help="untimed runs per clip first [5; --quick 1]")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="onnxruntime threads")
@click.option("--lengths", "lengths_text", default=None, metavar="LIST",
              help="clip lengths in seconds for cost against length [1,3,10,60,3600; --quick 1,3]")
@click.option("--jobs", "jobs_text", default=None, metavar="LIST",
              help="worker processes for batch throughput, capped at the CPU count [1,CPUs; --quick 1]")
@click.option("--batch-files", type=click.IntRange(1), default=None, help="files per batch [100; --quick 4]")
@click.option("--no-original", is_flag=True, help="skip the original librosa/noisereduce/Keras pipeline")
@click.option("--original-keras", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keras weights of the original pipeline [benchmarks/original/lstm.keras]")
@click.option("--original-max-seconds", type=click.FloatRange(1), default=60.0, show_default=True,
              help="longest clip the original pipeline runs (an hour takes it minutes and gigabytes)")
@click.option("--profile", is_flag=True, help="also write a cProfile of each model's latency loop to OUT/raw/")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True,
              help="folder for bench.json, bench.md and the charts (committed results: --out benchmarks/results)")
@click.option("--quick", is_flag=True, help="a few seconds' run for smoke tests (noisy numbers)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON instead of a table")
def bench(models_text, clips, runs, warmup, threads, lengths_text, jobs_text, batch_files, no_original,
          original_keras, original_max_seconds, profile, out, quick, as_json):
    """Latency, real-time factor, cost against clip length, batch throughput, cold start, memory and
    streaming CPU of gvd, each next to the original pipeline measured in the same run.

    The original (librosa + noisereduce + Keras, the [train] extra) is skipped with a note where it
    cannot run. Charts need matplotlib (the [bench] extra).
    """
    from . import markdown, original, plot, suite
    from .runs import Plan

    changes = {"threads": threads}
    for key, value in (("runs", runs), ("warmup", warmup), ("batch_files", batch_files),
                       ("lengths", _numbers(lengths_text, float, "--lengths", 0.5)),
                       ("jobs", _numbers(jobs_text, int, "--jobs", 1))):
        if value is not None:
            changes[key] = value
    if "jobs" not in changes and not quick:
        changes["jobs"] = (1, os.cpu_count() or 1)
    plan = Plan.quick(**changes) if quick else Plan(**changes)
    original_plan = None if no_original else original.OriginalPlan(
        keras=original_keras or original.DEFAULT_KERAS, max_length_seconds=original_max_seconds,
        runs=max(2, min(plan.runs, 10)) if not quick else 2, warmup=min(plan.warmup, 2))
    models = tuple(m.strip() for m in models_text.split(",") if m.strip()) if models_text else ()
    request = suite.Request(plan=plan, models=models, clips=tuple(clips), original=original_plan,
                            command=_command_line(), profile_out=out if profile else None)
    report = suite.run(request)
    out.mkdir(parents=True, exist_ok=True)
    charts: dict[str, str] = {}
    if plot.available():
        charts["stages"] = plot.stages_chart(report, out / "bench.png").name
        charts["lengths"] = plot.lengths_chart(report, out / "bench_lengths.png").name
    else:
        report.notes.append("no charts: matplotlib is not installed (pip install 'gvd[bench]')")
    (out / "bench.json").write_text(report.to_json())
    (out / "bench.md").write_text(markdown.markdown(report, charts))
    if as_json:
        click.echo(report.to_json(), nl=False)
    else:
        click.echo(markdown.text(report))
        written = [out / "bench.json", out / "bench.md", *(out / chart for chart in charts.values())]
        click.echo("\nwrote " + ", ".join(map(str, written)))
