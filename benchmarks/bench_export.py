"""Per-window inference time of the native ONNX export vs the plain tf2onnx export of the same weights.

    python benchmarks/bench_export.py [--train-dir DIR] [--models models] [--runs 2000] [--json]

One 3 s window (94 frames x n_mfcc), batch 1, onnxruntime with intra_op=1 and inter_op=1, median and
p95 over --runs timed runs after --warmup untimed ones. The Keras weights come from --train-dir
(DIR/<cell>/model.keras) when given; otherwise the architecture recorded in each shipped model is
rebuilt with random weights (latency does not depend on the weight values). The shipped files in
--models are timed too. Results: a table on stdout (or JSON with --json), and
benchmarks/results/export.md / export.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CELLS = ("lstm", "gru", "rnn")


def _keras_model(cell: str, train_dir: Path | None, models_dir: Path):
    """(keras model, where its weights came from)."""
    from export.build import ARCHITECTURE_KEY
    from export.keras_reader import load_keras
    from train.models import ORIGINAL_CONFIG, ModelConfig, build_model

    if train_dir is not None and (train_dir / cell / "model.keras").is_file():
        return load_keras(train_dir / cell / "model.keras"), f"{train_dir / cell / 'model.keras'}"
    shipped = models_dir / f"{cell}.onnx"
    if shipped.is_file():
        import onnx

        props = {p.key: p.value for p in onnx.load(shipped).metadata_props}
        if ARCHITECTURE_KEY in props:
            config = ModelConfig(**json.loads(props[ARCHITECTURE_KEY]))
            return build_model(config), f"architecture of {shipped.name}, random weights"
    return build_model(ORIGINAL_CONFIG[cell]), "ORIGINAL_CONFIG, random weights"


def _ops(proto) -> str:
    from export.native import all_op_types

    ops = set(all_op_types(proto))
    wanted = ["LSTM", "GRU", "RNN", "DynamicQuantizeLSTM", "Loop", "Scan"]
    return "+".join(op for op in wanted if op in ops) or "-"


def run(train_dir: Path | None, models_dir: Path, runs: int, warmup: int) -> dict:
    import onnx
    import onnxruntime as ort

    from export.keras_reader import read_network
    from export.keras_to_onnx import convert_tf2onnx
    from export.native import build_native
    from export.timing import WINDOW_FRAMES, time_interleaved

    rows = []
    for cell in CELLS:
        model, origin = _keras_model(cell, train_dir, models_dir)
        n_mfcc = int(model.inputs[0].shape[-1])
        protos = {"native": build_native(read_network(model))}
        try:
            protos["tf2onnx default"] = convert_tf2onnx(model)
        except Exception as exc:  # noqa: BLE001 - a tf2onnx release that cannot convert is itself a result
            rows.append({"cell": cell, "model": "tf2onnx default", "ops": f"conversion failed: {exc}"[:120],
                         "size_bytes": 0, "median_ms": float("nan"), "p95_ms": float("nan"), "weights": origin})
        candidates: dict[str, bytes | Path] = {name: p.SerializeToString() for name, p in protos.items()}
        for name in (f"{cell}.onnx", f"{cell}_int8.onnx"):
            if (models_dir / name).is_file():
                candidates[f"shipped {name}"] = models_dir / name
                protos[f"shipped {name}"] = onnx.load(models_dir / name)
        timings = time_interleaved(candidates, n_mfcc, WINDOW_FRAMES, runs=runs, warmup=warmup)
        for name, timing in timings.items():
            source = candidates[name]
            size = len(source) if isinstance(source, bytes) else source.stat().st_size
            weights = origin if isinstance(source, bytes) else _display(source)
            rows.append({"cell": cell, "model": name, "ops": _ops(protos[name]), "size_bytes": size,
                         "median_ms": timing.median_ms, "p95_ms": timing.p95_ms, "weights": weights})
        if "tf2onnx default" in timings:
            native_row = next(r for r in rows if r["cell"] == cell and r["model"] == "native")
            native_row["speedup_vs_tf2onnx"] = timings["tf2onnx default"].median_ms / timings["native"].median_ms
    import keras
    import tensorflow as tf
    import tf2onnx

    return {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_export.py" + (f" --train-dir {train_dir}" if train_dir else "")
                   + f" --runs {runs} --warmup {warmup}",
        "setup": {"window_frames": WINDOW_FRAMES, "batch": 1, "intra_op_threads": 1, "inter_op_threads": 1,
                  "runs": runs, "warmup": warmup},
        "versions": {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "tf2onnx": tf2onnx.__version__,
                     "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
        "machine": {"cpu": _cpu_name(), "cores": _cores(), "platform": platform.platform()},
        "rows": rows,
    }


def _display(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.resolve().is_relative_to(REPO) else str(path)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def to_markdown(result: dict) -> str:
    lines = [
        "# Export benchmark: native ONNX recurrent operators vs tf2onnx default",
        "",
        f"Measured {result['measured']} with `{result['command']}`.",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores (shared with other jobs). "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".",
        f"One window of {result['setup']['window_frames']} frames (3 s), batch 1, onnxruntime intra_op=1, "
        f"inter_op=1; median and p95 of {result['setup']['runs']} runs after {result['setup']['warmup']} "
        "warm-up runs, the models of a cell timed in alternating blocks of 50 runs.",
        "",
        "| cell | model | recurrent ops | size (bytes) | median ms | p95 ms | native speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        speedup = f"{row['speedup_vs_tf2onnx']:.1f}x" if "speedup_vs_tf2onnx" in row else ""
        lines.append(f"| {row['cell']} | {row['model']} | {row['ops']} | {row['size_bytes']:,} | "
                     f"{row['median_ms']:.4f} | {row['p95_ms']:.4f} | {speedup} |")
    origins = sorted({f"{r['cell']}: {r['weights']}" for r in result["rows"] if not r["model"].startswith("shipped")})
    lines += ["", "Weights: " + "; ".join(origins) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", type=Path, help="training output with <cell>/model.keras")
    parser.add_argument("--models", type=Path, default=REPO / "models", help="shipped models directory")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results",
                        help="where export.md / export.json are written")
    args = parser.parse_args(argv)
    result = run(args.train_dir, args.models, args.runs, args.warmup)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / "export.md").write_text(to_markdown(result))
    print(json.dumps(result, indent=2) if args.json else to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
