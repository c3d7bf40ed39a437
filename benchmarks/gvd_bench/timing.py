"""Clocks, processes and memory: how each figure is taken."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass

import click

from .report import Machine


@dataclass(frozen=True)
class ProcessRun:
    first_output_ms: float  # from launch to the first line on stdout: the first result
    wall_ms: float  # from launch to exit
    peak_rss_mb: float  # the process's maximum resident set size
    stdout: str


# A process started from this one reports this one's peak RSS as its own: Linux carries the parent's
# high-water mark into the child's ru_maxrss at exec. So processes are started by this small launcher,
# whose own peak (~10 MB) is below anything measured; it also times the first line of output from the
# child's launch, so its own start-up is not counted.
_LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
first = child.stdout.readline()
first_ms = (time.perf_counter() - start) * 1e3
rest = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
wall_ms = (time.perf_counter() - start) * 1e3
sys.stdout.buffer.write(first + rest)
sys.stdout.flush()
kb = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
sys.stderr.write(f"\\n{MARK} {first_ms} {wall_ms} {kb}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""
_MARK = "GVD_BENCH_PROCESS"


def run_process(command: list[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``command`` to its end through the launcher; a clear error with its stderr when it fails."""
    launcher = [sys.executable, "-c", _LAUNCHER.replace("{MARK}", _MARK)]
    done = subprocess.run(launcher + command, capture_output=True, text=True, env=env)
    marks = [line.split() for line in done.stderr.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not marks:
        errors = done.stderr.replace(f"{_MARK} ", "").strip()
        raise click.ClickException(f"{' '.join(command)} failed ({done.returncode}): {errors[-800:]}")
    first_ms, wall_ms, peak_kb = (float(v) for v in marks[-1][1:4])
    return ProcessRun(first_ms, wall_ms, peak_kb / 1024.0, done.stdout)


def gvd_command() -> list[str]:
    """``gvd`` as this interpreter runs it (``python -m edge`` is the same command)."""
    return [sys.executable, "-m", "edge"]


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine(load_start: float | None) -> Machine:
    """CPU model, core count and the versions that decide the speed of the runtime."""
    import numpy as np
    import onnxruntime

    from edge.audio import libsndfile_version

    return Machine(cpu=_cpu_name(), machine=platform.machine(), cores=os.cpu_count() or 1,
                   os=platform.platform(), python=platform.python_version(), numpy=np.__version__,
                   onnxruntime=onnxruntime.__version__, libsndfile=libsndfile_version(), load_average_start=load_start,
                   load_average_end=load_average())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
