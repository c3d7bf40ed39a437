"""NumPy spectral gating (edge.clean.spectral_gate) against noisereduce.reduce_noise(stationary=True).

Run alone:  python benchmarks/bench_denoise.py [--repeat 50] [--json]
Writes benchmarks/results/denoise.md and benchmarks/results/denoise.json.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from timing import timings, write_report

SR = 16000



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import noisereduce

    from edge.clean import spectral_gate

    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    speech = 0.1 * np.sin(2 * np.pi * (150 + 30 * np.sin(2 * np.pi * t)) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    y = (speech + 0.03 * rng.standard_normal(t.size)).astype(np.float32)

    def ref(x):
        return noisereduce.reduce_noise(y=x, sr=SR, stationary=True)

    max_diff = float(np.abs(spectral_gate(y, SR) - ref(y)).max())
    rows = {}
    for name, fn in (("numpy (edge.clean.spectral_gate)", lambda x: spectral_gate(x, SR)),
                     ("noisereduce.reduce_noise(stationary=True)", ref)):
        ms = timings(fn, y, args.repeat)
        rows[name] = {"median_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}
    names = list(rows)
    report = {
        "benchmark": "stationary spectral gating per 3 s window (16 kHz)",
        "repeat": args.repeat,
        "results": rows,
        "speedup_median": round(rows[names[1]]["median_ms"] / rows[names[0]]["median_ms"], 2),
        "max_abs_diff": max_diff,
        "load_avg_1min": os.getloadavg()[0],
        "command": f"python benchmarks/bench_denoise.py --repeat {args.repeat}",
    }
    lines = [f"# {report['benchmark']}", "", "| implementation | median ms | p95 ms |", "|---|---:|---:|",
             *[f"| {n} | {r['median_ms']:.3f} | {r['p95_ms']:.3f} |" for n, r in rows.items()], "",
             f"noisereduce / numpy (median): **{report['speedup_median']}x**; max |difference| {max_diff:.2e}.",
             f"1-minute load average {report['load_avg_1min']:.1f} (shared 2-core machine).",
             f"Reproduce: `{report['command']}`"]
    write_report("denoise", report, lines, args.json)


if __name__ == "__main__":
    main()
