"""The original university pipeline, timed the same way as gvd, for ``gvd bench`` to compare against.

librosa.load(sr=16000) -> noisereduce.reduce_noise -> RMS normalise to -20 dBFS -> pre-emphasis 0.97
-> librosa.feature.mfcc(n_mfcc=13, n_fft=2048, hop_length=512) on non-overlapping 3 s segments ->
Keras ``model.predict``; the clip probability is the mean over its segments.

It needs the ``[train]`` extra (librosa, noisereduce, TensorFlow/Keras), which is why gvd never
imports it: ``gvd bench`` runs this file in a subprocess. Run it alone as::

    python benchmarks/original_pipeline.py bench --clips models/samples --cell gru --runs 20
    python benchmarks/original_pipeline.py once models/samples/female_1.wav --cell gru
    python benchmarks/original_pipeline.py stream models/samples/female_1.wav --cell gru

Each mode prints one JSON object on stdout.
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


def _limit_threads(threads: int) -> None:
    """Pin TensorFlow and the BLAS/FFT libraries to ``threads`` threads, like gvd's --threads."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _find_keras(keras_dir: Path | None, cell: str) -> Path | None:
    if keras_dir is None:
        return None
    for candidate in (keras_dir / cell / "model.keras", keras_dir / "model.keras"):
        if candidate.is_file():
            return candidate
    return None


def load_model(cell: str, keras_dir: Path | None):
    """The trained Keras model the ONNX came from, else the same architecture with fresh weights."""
    import keras

    path = _find_keras(keras_dir, cell)
    if path is not None:
        return keras.models.load_model(path, compile=False), f"the Keras model (same weights) {path}", path
    from train.models import ORIGINAL_CONFIG, ModelConfig, build_model

    config, source = ORIGINAL_CONFIG[cell], f"the original project's {cell} architecture (train.models.ORIGINAL_CONFIG)"
    training = keras_dir / cell / "training.json" if keras_dir else None
    if training is not None and training.is_file():
        config = ModelConfig(**json.loads(training.read_text())["model_config"])
        source = f"the architecture in {training}"
    note = (f"no model.keras for '{cell}' found (looked in {keras_dir}, pass --keras-dir); built {source} "
            "with untrained weights: the timing is comparable, the probabilities are not")
    return build_model(config), note, None


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


def process(path: str, model) -> tuple[float, dict[str, float]]:
    """One clip through the original pipeline: (p_female, stage timings in ms)."""
    import librosa
    import noisereduce
    import numpy as np

    t0 = time.perf_counter()
    y, sr = librosa.load(path, sr=SAMPLE_RATE)  # decoding and resampling are one call in librosa
    t1 = time.perf_counter()
    y = noisereduce.reduce_noise(y=y, sr=sr).astype(np.float32)
    segments = [librosa.effects.preemphasis(_rms_normalize(s), coef=PRE_EMPHASIS) for s in _segments(y)]
    t2 = time.perf_counter()
    features = np.stack([
        librosa.feature.mfcc(y=s, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP).T for s in segments
    ]).astype(np.float32)
    t3 = time.perf_counter()
    probabilities = model.predict(features, verbose=0)
    t4 = time.perf_counter()
    stages = {"decode": (t1 - t0) * 1e3, "resample": 0.0, "clean": (t2 - t1) * 1e3,
              "features": (t3 - t2) * 1e3, "inference": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}
    return float(np.mean(probabilities)), stages


def _clip_paths(items: list[str]) -> list[str]:
    paths: list[str] = []
    for item in items:
        p = Path(item)
        paths += sorted(str(x) for x in p.glob("*.wav")) if p.is_dir() else [str(p)]
    if not paths:
        raise SystemExit("original_pipeline: no clips given")
    return paths


def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99))}


def bench(args) -> dict:
    clips = _clip_paths(args.clips)
    t0 = time.perf_counter()
    model, note, path = load_model(args.cell, args.keras_dir)
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(args.warmup):
        for clip in clips:
            process(clip, model)
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for clip in clips:
            t = time.perf_counter()
            _, timings = process(clip, model)
            totals.append((time.perf_counter() - t) * 1e3)
            for name, value in timings.items():
                stages.setdefault(name, []).append(value)
    return {
        "model": f"original-{args.cell}",
        "threads": args.threads,
        "e2e_ms": _percentiles(totals),
        "stages_ms": {name: _percentiles(values) for name, values in stages.items() if name != "total"},
        "load_ms": load_ms,
        "model_size_kb": path.stat().st_size / 1024 if path else None,
        "runs": args.runs,
        "clips": len(clips),
        "note": note,
    }


def once(args) -> dict:
    model, note, _ = load_model(args.cell, args.keras_dir)
    p_female, timings = process(args.clip, model)
    return {"path": args.clip, "p_female": p_female, "label": "female" if p_female >= 0.5 else "male",
            "timings_ms": timings, "note": note}


def stream(args) -> dict:
    """CPU cost if the original recipe re-ran on the last 3 s every ``hop`` seconds of live audio."""
    import librosa
    import noisereduce
    import numpy as np

    model, note, _ = load_model(args.cell, args.keras_dir)
    y, sr = librosa.load(args.clip, sr=SAMPLE_RATE)
    while y.size < args.seconds * sr:
        y = np.concatenate([y, y])
    y = y[: int(args.seconds * sr)]
    size, hop = int(SEGMENT_SECONDS * sr), int(args.hop * sr)
    window = y[:size]
    model.predict(librosa.feature.mfcc(y=window, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP).T[None],
                  verbose=0)  # warm-up
    cpu0 = time.process_time()
    for end in range(size, y.size + 1, hop):
        segment = noisereduce.reduce_noise(y=y[end - size : end], sr=sr).astype(np.float32)
        segment = librosa.effects.preemphasis(_rms_normalize(segment), coef=PRE_EMPHASIS)
        mfcc = librosa.feature.mfcc(y=segment, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP).T
        model.predict(mfcc[None].astype(np.float32), verbose=0)
    cpu = time.process_time() - cpu0
    audio_seconds = (y.size - size) / sr + args.hop
    return {"stream_cpu_percent": 100.0 * cpu / audio_seconds, "hop_seconds": args.hop,
            "audio_seconds": audio_seconds, "note": note}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="gru", help="recurrent cell of the model (lstm, gru, rnn)")
    parser.add_argument("--keras-dir", type=Path, default=None,
                        help="folder with <cell>/model.keras (the trained weights the ONNX came from)")
    parser.add_argument("--threads", type=int, default=1)
    modes = parser.add_subparsers(dest="mode", required=True)
    b = modes.add_parser("bench", help="latency per clip and per stage after a warm-up")
    b.add_argument("--clips", nargs="+", required=True)
    b.add_argument("--runs", type=int, default=20)
    b.add_argument("--warmup", type=int, default=2)
    o = modes.add_parser("once", help="one clip, for cold-start timing: prints the result and exits")
    o.add_argument("clip")
    s = modes.add_parser("stream", help="CPU per second of audio when re-run every hop")
    s.add_argument("clip")
    s.add_argument("--hop", type=float, default=0.5)
    s.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    _limit_threads(args.threads)
    result = {"bench": bench, "once": once, "stream": stream}[args.mode](args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
