"""The original university pipeline, as it ran, timed the same way as gvd for ``gvd bench`` to compare.

librosa.load(sr=16000) -> noisereduce.reduce_noise -> RMS normalise to -20 dBFS -> pre-emphasis 0.97
-> librosa.feature.mfcc(n_mfcc=13, n_fft=2048, hop_length=512) on non-overlapping 3 s segments ->
Keras ``model.predict`` per segment; the clip probability is the mean over its segments. The weights
are the original recipe's LSTM, a committed Keras file (``benchmarks/original/lstm.keras`` unless
``--keras`` says otherwise), so a fresh clone reproduces the comparison.

It needs the ``[train]`` extra (librosa, noisereduce, TensorFlow/Keras), which is why gvd never
imports it: ``gvd bench`` runs this file in subprocesses. Run it alone as::

    python benchmarks/original_pipeline.py measure --clips models/samples/male_16k.flac --runs 20
    python benchmarks/original_pipeline.py once models/samples/female_16k.flac
    python benchmarks/original_pipeline.py batch --jobs 2 models/samples/*.flac

Each mode prints one JSON object on stdout (``once`` and ``batch`` first print one line per clip).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SAMPLE_RATE = 16000
SEGMENT_SECONDS = 3.0
N_MFCC, N_FFT, HOP = 13, 2048, 512
TARGET_DBFS = -20.0
PRE_EMPHASIS = 0.97
STAGES = ("decode", "resample", "clean", "features", "inference")
DEFAULT_KERAS = Path(__file__).resolve().parent / "original" / "lstm.keras"


def _limit_threads(threads: int) -> None:
    """Pin TensorFlow and the BLAS/FFT libraries to ``threads`` threads, like gvd's --threads."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def load_model(path: Path):
    """The Keras model in ``path``; a clear error instead of untrained weights when it is missing."""
    if not path.is_file():
        raise SystemExit(f"original_pipeline: no Keras model at {path} (pass --keras FILE)")
    import keras

    return keras.models.load_model(path, compile=False)


def _rms_normalize(y):
    import numpy as np

    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms < 1e-10:
        return y
    return (y * (10.0 ** (TARGET_DBFS / 20.0) / rms)).astype(np.float32)


def _segments(y):
    size = int(SEGMENT_SECONDS * SAMPLE_RATE)
    if y.size <= size:
        return [y]
    return [y[start : start + size] for start in range(0, y.size - size + 1, size)]


def process(path: str, model) -> tuple[float, dict[str, float], float]:
    """One clip through the original pipeline: (p_female, stage timings in ms, audio seconds)."""
    import librosa
    import noisereduce
    import numpy as np

    t0 = time.perf_counter()
    y, sr = librosa.load(path, sr=SAMPLE_RATE)  # decoding and resampling are one call in librosa
    t1 = time.perf_counter()
    y = noisereduce.reduce_noise(y=y, sr=sr).astype(np.float32)
    segments = [librosa.effects.preemphasis(_rms_normalize(s), coef=PRE_EMPHASIS) for s in _segments(y)]
    t2 = time.perf_counter()
    features = [librosa.feature.mfcc(y=s, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP).T.astype(np.float32)
                for s in segments]
    t3 = time.perf_counter()
    probabilities = [float(model.predict(f[None], verbose=0)[0, 0]) for f in features]  # one call per window
    t4 = time.perf_counter()
    stages = {"decode": (t1 - t0) * 1e3, "resample": 0.0, "clean": (t2 - t1) * 1e3,
              "features": (t3 - t2) * 1e3, "inference": (t4 - t3) * 1e3}
    return float(np.mean(probabilities)), stages, y.size / sr


def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {q: float(np.percentile(a, int(q[1:]))) for q in ("p50", "p90", "p99")}


def _latency(clips: list[str], model, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        for clip in clips:
            process(clip, model)
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    audio_seconds = 0.0
    cpu0 = time.process_time()
    for _ in range(runs):
        for clip in clips:
            start = time.perf_counter()
            _, timings, seconds = process(clip, model)
            totals.append((time.perf_counter() - start) * 1e3)
            audio_seconds += seconds
            for name in STAGES:
                stages[name].append(timings[name])
    cpu = time.process_time() - cpu0
    return {"e2e_ms": _percentiles(totals), "stages_ms": {n: _percentiles(v) for n, v in stages.items()},
            "realtime_factor": audio_seconds / cpu if cpu > 0 else None}


def _lengths(clips: list[str], model, runs: int, budget_seconds: float) -> list[dict]:
    """Median wall time per clip for each clip (made of one length each), within a time budget."""
    out = []
    for clip in clips:
        times: list[float] = []
        seconds = 0.0
        spent = time.perf_counter()
        while len(times) < runs and (not times or time.perf_counter() - spent < budget_seconds):
            start = time.perf_counter()
            _, _, seconds = process(clip, model)
            times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        out.append({"path": clip, "seconds": seconds, "runs": len(times), "ms_per_clip": times[len(times) // 2]})
    return out


def _stream(clip: str, model, hop_seconds: float, seconds: float) -> float:
    """CPU % of one core if the original recipe re-ran on the last 3 s every ``hop`` of live audio
    (it had no streaming mode)."""
    import librosa
    import noisereduce
    import numpy as np

    y, sr = librosa.load(clip, sr=SAMPLE_RATE)
    while y.size < seconds * sr:
        y = np.concatenate([y, y])
    y = y[: int(seconds * sr)]
    size, hop = int(SEGMENT_SECONDS * sr), int(hop_seconds * sr)
    model.predict(librosa.feature.mfcc(y=y[:size], sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP).T[None],
                  verbose=0)  # warm-up
    cpu0 = time.process_time()
    for end in range(size, y.size + 1, hop):
        segment = noisereduce.reduce_noise(y=y[end - size : end], sr=sr).astype(np.float32)
        segment = librosa.effects.preemphasis(_rms_normalize(segment), coef=PRE_EMPHASIS)
        mfcc = librosa.feature.mfcc(y=segment, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP).T
        model.predict(mfcc[None].astype(np.float32), verbose=0)
    cpu = time.process_time() - cpu0
    audio_seconds = (y.size - size) / sr + hop_seconds
    return 100.0 * cpu / audio_seconds


def measure(args) -> dict:
    t0 = time.perf_counter()
    model = load_model(args.keras)
    result = {"load_ms": (time.perf_counter() - t0) * 1e3, "threads": args.threads}
    result.update(_latency(args.clips, model, args.runs, args.warmup))
    result["lengths"] = _lengths(args.length_clips, model, args.runs, args.length_budget) if args.length_clips else []
    result["stream_cpu_percent"] = (_stream(args.stream_clip, model, args.hop, args.stream_seconds)
                                    if args.stream_clip else None)
    result["stream_hop_seconds"] = args.hop
    return result


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def once(args) -> dict:
    model = load_model(args.keras)
    p_female, timings, seconds = process(args.clip, model)
    return {"path": args.clip, "p_female": p_female, "label": "female" if p_female >= 0.5 else "male",
            "timings_ms": timings, "seconds": seconds}


_WORKER: dict = {}


def _init_worker(keras_path: str, threads: int) -> None:
    _limit_threads(threads)
    _WORKER["model"] = load_model(Path(keras_path))


def _work(clip: str) -> dict:
    p_female, _, seconds = process(clip, _WORKER["model"])
    return {"path": clip, "p_female": p_female, "seconds": seconds}


def batch(args) -> dict:
    """Every clip once, in ``--jobs`` worker processes (each loads the model), one line per clip."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if args.jobs <= 1:
        _init_worker(str(args.keras), args.threads)
        records = map(_work, args.clips)
        return _drain(records)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_init_worker,
                             initargs=(str(args.keras), args.threads)) as pool:
        return _drain(pool.map(_work, args.clips))


def _drain(records) -> dict:
    files, seconds = 0, 0.0
    for record in records:
        _emit(record)
        files += 1
        seconds += record["seconds"]
    return {"files": files, "audio_seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keras", type=Path, default=DEFAULT_KERAS, help=f"Keras model file [{DEFAULT_KERAS}]")
    parser.add_argument("--threads", type=int, default=1)
    modes = parser.add_subparsers(dest="mode", required=True)
    m = modes.add_parser("measure", help="latency per clip and per stage, cost per clip length, streaming CPU")
    m.add_argument("--clips", nargs="+", required=True)
    m.add_argument("--runs", type=int, default=20)
    m.add_argument("--warmup", type=int, default=2)
    m.add_argument("--length-clips", nargs="*", default=[], help="clips of growing length, for cost vs length")
    m.add_argument("--length-budget", type=float, default=10.0, help="seconds to spend per length at most")
    m.add_argument("--stream-clip", default=None, help="clip to stream (re-run every --hop)")
    m.add_argument("--stream-seconds", type=float, default=20.0)
    m.add_argument("--hop", type=float, default=0.5)
    o = modes.add_parser("once", help="one clip, for cold-start timing: prints the result and exits")
    o.add_argument("clip")
    b = modes.add_parser("batch", help="every clip once in --jobs processes, for throughput")
    b.add_argument("clips", nargs="+")
    b.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    _limit_threads(args.threads)
    _emit({"measure": measure, "once": once, "batch": batch}[args.mode](args))


if __name__ == "__main__":
    main()
