"""Export one trained model, or a whole training output directory into a shippable models/ folder."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.files import atomic_write_bytes
from edge.metadata import CELLS, INPUT_NAME, OUTPUT_NAME, SPEECH_OUTPUT_NAME, ModelMetadata

from .describe import TrainingRecord, attach_metadata, verify_metadata
from .errors import ExportError
from .manifest import ManifestEntry, choose_default, loco_accuracy, sha256_file, write_manifest
from .native import DEFAULT_OPSET, OP_TYPES, NativeOptions, all_op_types, build_native
from .parity import (
    DEFAULT_TOLERANCE,
    WindowSet,
    clip_accuracy,
    compare,
    keras_outputs,
    load_windows,
    onnx_outputs,
    onnx_probabilities,
    require_parity,
    synthetic_windows,
)
from .quantize import QUANTIZABLE_CELLS, quantize_int8
from .timing import Timing, time_interleaved, time_window

METHODS = ("native", "tf2onnx")
ARCHITECTURE_KEY = "gvd_export.model_config"  # outside the gvd. prefix: informational, for benchmarks
MAX_BYTES = 300_000  # the 300 KB budget, counted strictly
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    method: str = "native"
    opset: int = DEFAULT_OPSET
    tolerance: float = DEFAULT_TOLERANCE
    extra_windows: tuple[Path, ...] = ()  # e.g. the whole test split, same .npz format
    synthetic_windows: int = 48
    int8: bool = True
    max_int8_drop_points: float = 0.5
    # Also required of int8: at most this share of clip decisions may flip. Equal accuracy with
    # many decisions swapped both ways would be a different model, not a smaller copy.
    max_int8_flip_share: float = 0.02
    max_bytes: int = MAX_BYTES
    timing_runs: int = 300

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        if self.opset < 15:
            raise ValueError("gvd models need opset 15 or newer")


@dataclass
class ExportResult:
    name: str
    cell: str
    path: Path
    quantized: bool
    size_bytes: int
    sha256: str
    timing: Timing
    metadata: ModelMetadata
    record: TrainingRecord
    parity: dict[str, Any] | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    op_types: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.path.name, "cell": self.cell, "quantized": self.quantized,
                "size_bytes": self.size_bytes, "sha256": self.sha256, "timing": self.timing.to_dict(),
                "parity": self.parity, "accuracy": self.accuracy,
                "recurrent_ops": sorted({op for op in self.op_types if op in _RECURRENT_OPS})}


_RECURRENT_OPS = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM", "Loop", "Scan"}


@dataclass(frozen=True)
class Sources:
    keras: Path
    training: Path
    parity: Path | None

    @classmethod
    def find(cls, source: str | Path) -> Sources:
        """A training output directory (model.keras + training.json) or a .keras file beside its training.json."""
        source = Path(source)
        directory = source if source.is_dir() else source.parent
        keras_file = directory / "model.keras" if source.is_dir() else source
        if not keras_file.is_file():
            raise ExportError(f"no Keras model at {keras_file}")
        training = directory / "training.json"
        if not training.is_file():
            raise ExportError(f"no training.json next to {keras_file}: the exported model must carry the "
                              "feature settings and threshold it was trained with")
        parity = directory / "parity_windows.npz"
        return cls(keras=keras_file, training=training, parity=parity if parity.is_file() else None)


def _check_config(record: TrainingRecord, spec) -> None:
    """The Keras file and its training.json must describe the same network."""
    config = record.model_config
    found = {"cell": spec.cell, "layers": len(spec.recurrent), "units": spec.recurrent[0].units,
             "bidirectional": spec.recurrent[0].bidirectional, "pooling": spec.pooling,
             "n_features": spec.n_inputs}
    wrong = {k: (config[k], v) for k, v in found.items() if k in config and config[k] != v}
    if record.cell != spec.cell:
        wrong["cell (training.json)"] = (record.cell, spec.cell)
    if spec.n_inputs != record.feature_settings.n_features:
        wrong["n_features (feature settings)"] = (record.feature_settings.n_features, spec.n_inputs)
    if wrong:
        details = ", ".join(f"{k}: training.json says {a!r}, model has {b!r}" for k, (a, b) in wrong.items())
        raise ExportError(f"model.keras does not match its training.json ({details})")


def check_structure(proto, cell: str, native: bool) -> list[str]:
    """Op types of the graph; for native exports the fused operator must be there and no loop left."""
    ops = all_op_types(proto)
    if native:
        wanted = {"lstm": {"LSTM", "DynamicQuantizeLSTM"}}.get(cell, {OP_TYPES[cell]})
        if not wanted & set(ops):
            raise ExportError(f"the exported {cell} model has no native {OP_TYPES[cell]} node")
        loops = sorted({op for op in ops if op in ("Loop", "Scan")})
        if loops:
            raise ExportError(f"the exported {cell} model still contains {', '.join(loops)}")
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs not in ([OUTPUT_NAME], [OUTPUT_NAME, SPEECH_OUTPUT_NAME]):
        raise ExportError(f"graph I/O is {inputs} -> {outputs}, expected [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}] "
                          f"(and {SPEECH_OUTPUT_NAME!r})")
    return ops


@dataclass
class ParitySets:
    every: WindowSet  # real + synthetic: the parity check runs on all of them
    real: WindowSet | None  # training's windows and --windows files
    labelled: WindowSet | None  # the real ones that carry labels (for accuracy)


def _windows(sources: Sources, record: TrainingRecord, options: ExportOptions) -> ParitySets:
    n_mfcc = record.feature_settings.n_features  # the model input's width
    files = ([sources.parity] if sources.parity else []) + list(options.extra_windows)
    real_parts = [load_windows(p, n_mfcc) for p in files]
    synthetic = ([synthetic_windows(n_mfcc, options.synthetic_windows, frames=record.feature_settings.window_frames)]
                 if options.synthetic_windows else [])

    def join(parts: list[WindowSet]) -> WindowSet | None:
        return WindowSet.concat(parts) if parts else None

    every = join(real_parts + synthetic)
    if every is None:
        raise ExportError("no parity windows: give parity_windows.npz, --windows, or synthetic windows")
    return ParitySets(every=every, real=join(real_parts),
                      labelled=join([p for p in real_parts if p.labels is not None]))


def _serialize(proto, metadata: ModelMetadata, record: TrainingRecord, max_bytes: int) -> bytes:
    attach_metadata(proto, metadata)
    entry = next((p for p in proto.metadata_props if p.key == ARCHITECTURE_KEY), None) or proto.metadata_props.add()
    entry.key, entry.value = ARCHITECTURE_KEY, json.dumps(record.model_config, sort_keys=True)
    data = proto.SerializeToString()
    verify_metadata(data, metadata)
    if len(data) > max_bytes:
        raise ExportError(f"the exported model is {len(data)} bytes, over the {max_bytes}-byte budget; "
                          "train a smaller network")
    return data


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _session(data: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def export_model(source: str | Path, out: str | Path, options: ExportOptions = ExportOptions(),
                 progress: Progress = lambda message: None) -> list[ExportResult]:
    """Export one trained model to ``out`` (.onnx); with ``options.int8`` also ``<stem>_int8.onnx``
    when the cell has an int8 kernel and accuracy holds. Returns the written models (float first)."""
    from .keras_reader import load_keras, read_network

    sources = Sources.find(source)
    out = Path(out)
    record = TrainingRecord.load(sources.training)
    progress(f"{record.cell}: loading {sources.keras}")
    model = load_keras(sources.keras)
    spec = read_network(model)
    _check_config(record, spec)
    native = options.method == "native"
    if native:
        proto = build_native(spec, NativeOptions(opset=options.opset, graph_name=f"gvd_{spec.cell}",
                                                 producer_version=_version()))
    else:
        from .keras_to_onnx import convert_tf2onnx

        proto = convert_tf2onnx(model, options.opset)
    ops = check_structure(proto, spec.cell, native)
    graph_outputs = [o.name for o in proto.graph.output]
    if graph_outputs != list(record.outputs):
        raise ExportError(f"{record.cell}: the model has outputs {graph_outputs} but training.json declares "
                          f"{list(record.outputs)}")

    sets = _windows(sources, record, options)
    windows, labelled = sets.every, sets.labelled
    progress(f"{record.cell}: parity on {len(windows)} windows ({windows.source})")
    session = _session(proto.SerializeToString())
    reference, candidate = keras_outputs(model, windows.windows), onnx_outputs(session, windows.windows)
    report = compare(reference[0], candidate[0], windows, record.threshold, options.tolerance)
    require_parity(report, f"{record.cell} ({options.method})")
    if spec.speech is not None:
        speech_diff = float(np.max(np.abs(reference[1] - candidate[1])))
        if speech_diff > options.tolerance:
            raise ExportError(f"{record.cell}: p_speech differs from Keras by {speech_diff:.2e} "
                              f"(tolerance {options.tolerance:g})")
        progress(f"{record.cell}: p_speech parity, max |Keras - ONNX| {speech_diff:.1e}")

    accuracy: dict[str, Any] = {}
    if labelled is not None:
        float_probs = onnx_probabilities(session, labelled.windows)
        accuracy = {"clip_accuracy": clip_accuracy(float_probs, labelled, record.threshold),
                    "clips": len(labelled.clip_groups()), "source": labelled.source}
    timing = time_window(proto.SerializeToString(), spec.n_inputs, frames=record.feature_settings.window_frames,
                         runs=options.timing_runs)
    export_info = {"method": options.method, "opset": options.opset, "parity_max_abs_diff": report.max_abs_diff,
                   "parity_windows": report.windows, "window_ms_median": round(timing.median_ms, 4)}
    metadata = record.metadata({"export": export_info})
    data = _serialize(proto, metadata, record, options.max_bytes)
    _write(out, data)
    results = [ExportResult(name=out.stem, cell=spec.cell, path=out, quantized=False, size_bytes=len(data),
                            sha256=sha256_file(out), timing=timing, metadata=metadata, record=record,
                            parity=report.to_dict(), accuracy=accuracy, op_types=ops)]
    progress(f"{record.cell}: wrote {out.name} ({len(data)} bytes, parity {report.max_abs_diff:.2e}, "
             f"{timing.median_ms:.3f} ms/window)")
    int8_path = out.with_name(f"{out.stem}_int8.onnx")
    if options.int8 and native and spec.cell in QUANTIZABLE_CELLS:
        quantized = _int8(proto, data, sets, record, options, int8_path, results[0], progress)
        if quantized is not None:
            results.append(quantized)
    return results


def _int8(proto, float_bytes: bytes, sets: ParitySets, record: TrainingRecord, options: ExportOptions,
          path: Path, float_result: ExportResult, progress: Progress) -> ExportResult | None:
    """Quantize, measure, and write the int8 model only if clip accuracy drops by at most the allowed points.

    Without labelled windows the drop is bounded by the share of real clips whose decision flips
    (a flip can cost at most one correct clip), which is what gets checked then.
    """
    labelled = sets.labelled
    windows = sets.real or sets.every
    q = quantize_int8(float_bytes)
    check_structure(q, record.cell, native=True)
    q_bytes_plain = q.SerializeToString()
    float_session, q_session = _session(float_bytes), _session(q_bytes_plain)
    reference = onnx_probabilities(float_session, windows.windows)
    candidate = onnx_probabilities(q_session, windows.windows)
    report = compare(reference, candidate, windows, record.threshold, tolerance=float("inf"))
    evaluation: dict[str, Any] = {"max_abs_diff_vs_float": report.max_abs_diff,
                                  "clip_decision_flips": report.clip_decision_mismatches, "clips": report.clips}
    if labelled is not None:
        acc_float = clip_accuracy(onnx_probabilities(float_session, labelled.windows), labelled, record.threshold)
        acc_int8 = clip_accuracy(onnx_probabilities(q_session, labelled.windows), labelled, record.threshold)
        drop = 100.0 * (acc_float - acc_int8)
        evaluation.update({"clip_accuracy_float": acc_float, "clip_accuracy_int8": acc_int8,
                           "accuracy_drop_points": drop, "accuracy_source": labelled.source,
                           "labelled_clips": len(labelled.clip_groups())})
    else:
        drop = 100.0 * report.clip_decision_mismatches / max(report.clips, 1)
        evaluation.update({"accuracy_drop_points_bound": drop,
                           "accuracy_source": "no labels: bound = share of flipped clip decisions"})
    # Float and int8 timed in alternating blocks, so that machine load hits both alike.
    timings = time_interleaved({"float": float_bytes, "int8": q_bytes_plain}, record.feature_settings.n_features,
                               record.feature_settings.window_frames, runs=options.timing_runs,
                               warmup=min(50, options.timing_runs))
    timing = timings["int8"]
    evaluation.update({"size_bytes_float": float_result.size_bytes, "size_bytes_int8": len(q_bytes_plain),
                       "window_ms_median_float": round(timings["float"].median_ms, 4),
                       "window_ms_median_int8": round(timing.median_ms, 4)})
    flip_share = report.clip_decision_mismatches / max(report.clips, 1)
    reasons = []
    if drop > options.max_int8_drop_points:
        reasons.append(f"clip accuracy drop {drop:.2f} points > {options.max_int8_drop_points}")
    if flip_share > options.max_int8_flip_share:
        reasons.append(f"{report.clip_decision_mismatches} of {report.clips} clip decisions flip "
                       f"({100 * flip_share:.1f}% > {100 * options.max_int8_flip_share:g}%)")
    passed = not reasons
    evaluation["shipped"] = passed
    if reasons:
        evaluation["not_shipped_because"] = "; ".join(reasons)
    float_result.accuracy["int8"] = evaluation
    if not passed:
        path.unlink(missing_ok=True)
        progress(f"{record.cell}: int8 NOT shipped: {evaluation['not_shipped_because']}")
        return None
    export_info = {"method": "native+int8-dynamic", "opset": options.opset, "quantized": True,
                   "int8": evaluation, "window_ms_median": round(timing.median_ms, 4)}
    metadata = record.metadata({"export": export_info})
    data = _serialize(q, metadata, record, options.max_bytes)
    _write(path, data)
    evaluation["size_bytes_int8"] = len(data)
    progress(f"{record.cell}: wrote {path.name} ({len(data)} bytes, accuracy drop {drop:.2f} points, "
             f"{timing.median_ms:.3f} ms/window)")
    return ExportResult(name=path.stem, cell=record.cell, path=path, quantized=True, size_bytes=len(data),
                        sha256=sha256_file(path), timing=timing, metadata=metadata, record=record,
                        parity={"max_abs_diff_vs_float": report.max_abs_diff}, accuracy=evaluation,
                        op_types=all_op_types(q))


def _version() -> str:
    from edge import __version__

    return __version__


def find_cells(train_dir: str | Path) -> list[Path]:
    """Cell directories (in lstm, gru, rnn order) holding a model.keras."""
    train_dir = Path(train_dir)
    if not train_dir.is_dir():
        raise ExportError(f"{train_dir} is not a directory")
    found = [train_dir / cell for cell in CELLS if (train_dir / cell / "model.keras").is_file()]
    if not found:
        raise ExportError(f"no <cell>/model.keras under {train_dir} (expected {', '.join(CELLS)})")
    return found


def _entry(result: ExportResult) -> ManifestEntry:
    # Headline numbers first (``gvd models`` shows the first few numeric ones), then training's metrics.
    training = result.record.metrics
    metrics: dict[str, Any] = {"loco_accuracy": loco_accuracy(training)}
    if isinstance(training.get("accuracy"), (int, float)):
        metrics["accuracy"] = training["accuracy"]
    metrics.update({"window_ms_median": round(result.timing.median_ms, 4),
                    "window_ms_p95": round(result.timing.p95_ms, 4)})
    if result.parity and "max_abs_diff" in result.parity:
        metrics["parity_max_abs_diff"] = result.parity["max_abs_diff"]
    if result.quantized:
        metrics["int8"] = result.accuracy
        # Training measured the float model: its LOCO number is kept under another name (LOCO was not
        # re-run for int8), and this model's test accuracy is the int8 measurement.
        metrics["loco_accuracy_float"] = metrics.pop("loco_accuracy")
        metrics = {"loco_accuracy": None, **metrics}
        if isinstance(result.accuracy.get("clip_accuracy_int8"), float):
            metrics["accuracy"] = result.accuracy["clip_accuracy_int8"]
    metrics.update({k: v for k, v in training.items() if k not in metrics})
    config = result.record.model_config
    shape = (f"{config.get('layers', 1)}x{config.get('units')}"
             f"{' bidirectional' if config.get('bidirectional') else ''} {result.cell.upper()}, "
             f"{config.get('pooling', 'last')} pooling")
    description = (f"{shape}, dynamic int8 (onnxruntime)" if result.quantized
                   else f"{shape}, float32, native ONNX {OP_TYPES[result.cell]}")
    return ManifestEntry(name=result.name, file=result.path.name, sha256=result.sha256,
                         size_bytes=result.size_bytes, cell=result.cell, quantized=result.quantized,
                         metrics=metrics, description=description)


def export_release(train_dir: str | Path, out_dir: str | Path, options: ExportOptions = ExportOptions(),
                   progress: Progress = lambda message: None) -> tuple[list[ExportResult], str]:
    """Export every cell in ``train_dir`` into ``out_dir`` with manifest.json and README.md.

    Everything is built in a staging folder first and moved in at the end (manifest last), so a
    failed export never leaves models/ with files that do not match its manifest.
    """
    from .card import write_card

    if options.method != "native":
        raise ExportError("shipped models are always native exports")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = find_cells(train_dir)
    results: list[ExportResult] = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as staging:
        staging_dir = Path(staging)
        for cell_dir in cells:
            results += export_model(cell_dir, staging_dir / f"{cell_dir.name}.onnx", options, progress)
        entries = [_entry(r) for r in results]
        default = choose_default(entries)
        write_card(staging_dir / "README.md", results, default, Path(train_dir))
        for result in results:
            target = out_dir / result.path.name
            shutil.move(str(result.path), target)
            result.path = target
        for cell in CELLS:  # drop shipped files this run did not rebuild (e.g. an int8 that no longer passes)
            for stale in (out_dir / f"{cell}.onnx", out_dir / f"{cell}_int8.onnx"):
                if stale.exists() and stale.name not in {r.path.name for r in results}:
                    stale.unlink()
        shutil.move(str(staging_dir / "README.md"), out_dir / "README.md")
        write_manifest(out_dir, entries, default)
    progress(f"default model: {default}")
    return results, default

