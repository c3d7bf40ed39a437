"""NumPy MFCC (edge.features.mfcc) against librosa.feature.mfcc, per 3-second window.

Run alone:  python benchmarks/bench_mfcc.py [--repeat 200] [--json]
Writes benchmarks/results/mfcc.md and benchmarks/results/mfcc.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import numpy as np
from timing import timings, write_report

SR, SECONDS = 16000, 3.0



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    args = parser.parse_args()

    from edge.features import dct_matrix, mel_filterbank, mfcc, power_spectrogram

    def dense(x):
        """The previous version: the same maths with a dense (frames x 1025) @ (1025 x 128) matmul."""
        mel = power_spectrogram(x) @ mel_filterbank(SR, 2048, 128).T
        log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
        log_mel = np.maximum(log_mel, log_mel.max() - 80.0)
        return (log_mel @ dct_matrix(13, 128).T).astype(np.float32)

    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    # Speech-like test signal: harmonics of a gliding pitch plus noise (timing does not depend on content).
    y = (0.1 * np.sin(2 * np.pi * (150 + 30 * np.sin(2 * np.pi * t)) * t) + 0.01 * rng.standard_normal(t.size))
    y = y.astype(np.float32)

    def ref(x):
        return librosa.feature.mfcc(y=x, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512)

    def summary(ms: np.ndarray) -> dict[str, float]:
        return {"median_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}

    # NumPy first, before librosa is even imported: the runtime never loads librosa, and once librosa
    # has run, its BLAS/numba worker threads slow NumPy's FFT in the same process (measured 1.8 -> 6.8 ms).
    results = {name: summary(timings(fn, y, args.repeat))
               for name, fn in (("numpy (edge.features.mfcc)", mfcc), ("numpy, dense mel matmul (before)", dense))}
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results["librosa.feature.mfcc"] = summary(timings(ref, y, args.repeat))
        max_diff = float(np.abs(mfcc(y) - ref(y).T).max())
    ours, theirs = results["numpy (edge.features.mfcc)"], results["librosa.feature.mfcc"]
    report = {
        "benchmark": "mfcc per 3 s window (16 kHz, n_mfcc 13, n_fft 2048, hop 512)",
        "repeat": args.repeat,
        "results": results,
        "speedup_median": round(theirs["median_ms"] / ours["median_ms"], 2),
        "max_abs_diff": max_diff,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "librosa": librosa.__version__,
                    "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
        "command": f"python benchmarks/bench_mfcc.py --repeat {args.repeat}",
    }
    lines = [
        f"# {report['benchmark']}",
        "",
        "| implementation | median ms | p95 ms |",
        "|---|---:|---:|",
        *[f"| {name} | {r['median_ms']:.3f} | {r['p95_ms']:.3f} |" for name, r in results.items()],
        "",
        f"librosa / numpy (median): **{report['speedup_median']}x**; max |difference| {max_diff:.2e}.",
        f"{args.repeat} runs; 1-minute load average at the end {report['machine']['load_avg_1min']:.1f} "
        f"on {report['machine']['cpu_count']} cores (a shared machine: p95 reflects other work).",
        f"Reproduce: `{report['command']}`",
    ]
    write_report("mfcc", report, lines, args.json)


if __name__ == "__main__":
    main()
