"""Shared by the stand-alone micro-benchmarks (run as scripts, so this folder is on sys.path)."""

from __future__ import annotations

import time

import numpy as np


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
