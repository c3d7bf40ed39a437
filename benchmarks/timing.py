"""Shared by the stand-alone micro-benchmarks (run as scripts, so this folder is on sys.path)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def timings(fn, y: np.ndarray, repeat: int) -> np.ndarray:
    """Milliseconds per call of ``fn(y)`` over ``repeat`` calls, after one untimed warm-up call
    (filter banks, FFT plans and librosa's numba are built on first use)."""
    fn(y)
    out = np.empty(repeat)
    for k in range(repeat):
        start = time.perf_counter()
        fn(y)
        out[k] = time.perf_counter() - start
    return out * 1000.0


def write_report(name: str, report: dict, lines: list[str], as_json: bool) -> None:
    """Save ``results/<name>.json`` and ``results/<name>.md``, and print one of them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(report, indent=2) if as_json else "\n".join(lines))
