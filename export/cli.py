"""``gvd export``: trained Keras models -> native ONNX models with metadata, parity-checked.

Module-level imports stay light (click only): ``gvd --help`` imports every command module.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("export")
@click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="FILE.onnx for one model; the models directory with --train-dir.")
@click.option("--train-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training output (DIR/<cell>/model.keras + training.json): export every cell, "
                   "optional int8, and write manifest.json and README.md into --out.")
@click.option("--method", type=click.Choice(["native", "tf2onnx"]), default="native", show_default=True,
              help="native: fused LSTM/GRU/RNN built from the weights; tf2onnx: the plain conversion "
                   "(single model only, for comparison).")
@click.option("--opset", type=click.IntRange(15, None), default=17, show_default=True)
@click.option("--windows", "extra_windows", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Extra parity windows (.npz: the labelled test_windows.npz format, or features_<i> "
                   "[+ label_<i>, clip_<i>, speech_<i>]). Each cell's own test_windows.npz is always used.")
@click.option("--tolerance", type=float, default=1e-5, show_default=True,
              help="Largest allowed |Keras - onnxruntime| on any window.")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Also try dynamic int8 (LSTM only); shipped if clip accuracy drops by <= 0.5 points and "
                   "<= 2% of clip decisions flip.")
@click.option("--json", "as_json", is_flag=True, help="Print the export summary as JSON.")
def export(source: Path | None, out: Path, train_dir: Path | None, method: str, opset: int,
           extra_windows: tuple[Path, ...], tolerance: float, int8: bool, as_json: bool) -> None:
    """Export trained models to small, self-describing ONNX files.

    Parity and the int8 accuracy check run on the labelled test windows training wrote next to
    each training.json (test_windows.npz), plus training's parity sample and synthetic windows.

    \b
    gvd export --train-dir DIR --out models        every cell in DIR, + manifest.json, README.md
    gvd export DIR/gru --out gru.onnx              one model (a training output dir or a .keras file)
    """
    from edge.errors import GvdError

    from .build import ExportOptions

    if (source is None) == (train_dir is None):
        raise click.UsageError("give either SOURCE (one model) or --train-dir (every cell), not both")
    say = lambda message: click.echo(message, err=True)  # noqa: E731
    try:
        test_windows = find_test_windows(source, train_dir)
        if test_windows is None:
            say("no test_windows.npz next to training.json: int8 is judged by flipped decisions, not accuracy")
        else:
            extra_windows = (test_windows, *extra_windows)
        options = ExportOptions(method=method, opset=opset, tolerance=tolerance, extra_windows=extra_windows,
                                int8=int8)
        results, default = _run(source, out, train_dir, options, say)
    except GvdError as exc:
        raise click.ClickException(str(exc)) from exc
    _print(results, default, as_json)


def find_test_windows(source: Path | None, train_dir: Path | None) -> Path | None:
    """The run's labelled test windows: one file, the same for every cell (they share one split)."""
    from edge.files import sha256_file
    from edge.labelled_windows import TEST_WINDOWS_NAME

    from .errors import ExportError

    if train_dir is not None:
        folders = [d for d in sorted(train_dir.iterdir()) if (d / "training.json").is_file()]
    else:
        assert source is not None
        folders = [source if source.is_dir() else source.parent]
    files = [d / TEST_WINDOWS_NAME for d in folders if (d / TEST_WINDOWS_NAME).is_file()]
    if not files:
        return None
    if len(files) != len(folders) or len({sha256_file(f) for f in files}) != 1:
        raise ExportError(f"the cells in {train_dir} do not share one {TEST_WINDOWS_NAME} (different test splits); "
                          "export them one by one")
    return files[0]


def _run(source, out: Path, train_dir, options, say):
    from .build import export_model, export_release

    if train_dir is not None:
        if out.suffix == ".onnx":
            raise click.UsageError("--out must be a directory with --train-dir")
        return export_release(train_dir, out, options, say)
    if out.suffix != ".onnx":
        raise click.UsageError("--out must be a .onnx file when exporting one model")
    return export_model(source, out, options, say), None


def _print(results, default, as_json: bool) -> None:
    summary = {"default": default, "models": [r.summary() for r in results]}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for r in results:
        parity = r.parity.get("max_abs_diff") if r.parity else None
        click.echo(f"{r.path}  {r.cell}{' int8' if r.quantized else ''}  {r.size_bytes:,} bytes  "
                   f"{r.timing.median_ms:.3f} ms/window"
                   + (f"  parity {parity:.2e}" if parity is not None else "")
                   + ("  (default)" if r.name == default else ""))
        int8 = r.accuracy.get("int8")
        if int8 and not int8.get("shipped"):
            click.echo(f"{r.name}: int8 not shipped ({int8.get('not_shipped_because')})")
