"""Per-window inference time the way an edge device runs it: batch 1, one thread."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINDOW_FRAMES = 94  # a 3 s window at 16 kHz with hop 512 (librosa's centred framing)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float
    runs: int

    def to_dict(self) -> dict:
        return {"median_ms": round(self.median_ms, 4), "p95_ms": round(self.p95_ms, 4), "runs": self.runs}


def single_thread_session(model: str | Path | bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def time_window(model: str | Path | bytes, n_mfcc: int = 13, frames: int = WINDOW_FRAMES, runs: int = 300,
                warmup: int = 30, seed: int = 0) -> Timing:
    """Median and p95 latency of one window after warm-up."""
    session = single_thread_session(model)
    name = session.get_inputs()[0].name
    x = np.random.default_rng(seed).standard_normal((1, frames, n_mfcc)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {name: x})
    samples = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        samples[i] = time.perf_counter() - start
    return Timing(median_ms=float(np.median(samples) * 1e3), p95_ms=float(np.percentile(samples, 95) * 1e3),
                  runs=runs)


def time_interleaved(models: dict[str, str | Path | bytes], n_mfcc: int = 13, frames: int = WINDOW_FRAMES,
                     runs: int = 2000, warmup: int = 200, block: int = 50, seed: int = 0) -> dict[str, Timing]:
    """Like ``time_window`` for several models at once, alternating blocks of runs between them so
    that load from other processes on a shared machine hits every model alike."""
    sessions = {name: single_thread_session(model) for name, model in models.items()}
    x = np.random.default_rng(seed).standard_normal((1, frames, n_mfcc)).astype(np.float32)
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
    for name, session in sessions.items():
        for _ in range(warmup):
            session.run(None, feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    done = 0
    while done < runs:
        count = min(block, runs - done)
        for name, session in sessions.items():
            feed = feeds[name]
            for _ in range(count):
                start = time.perf_counter()
                session.run(None, feed)
                samples[name].append(time.perf_counter() - start)
        done += count
    return {name: Timing(median_ms=float(np.median(s) * 1e3), p95_ms=float(np.percentile(s, 95) * 1e3), runs=runs)
            for name, s in samples.items()}
