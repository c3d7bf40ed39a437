"""Rebuild the shipped models: train the three default-preset cells, then export them.

    python -m train.release --data ../shared/data --nonspeech ../shared/nonspeech --out models [--loco] [--keep DIR]

Training writes the training-output contract into a temporary folder (or ``--keep DIR``); the
exporter is then run as its own command (``gvd export --train-dir DIR --out models``) so that the
training side never imports the export package.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import click

from edge.metadata import CELLS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Corpus folder(s), as for gvd train (the shared root expands to its three corpora).")
@click.option("--out", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Where the exporter writes the ONNX models and manifest.")
@click.option("--loco", is_flag=True, help="Also run leave-one-corpus-out (its numbers go into the model card).")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the Keras models here instead of a temp dir.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--cache-dir", type=click.Path(file_okay=False))
@click.option("--nonspeech", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of real non-speech recordings to train on (repeatable); with --loco each of its "
                   "sources is also held out in one fold.")
@click.option("--no-mlflow", is_flag=True)
def main(data, out, loco, keep, seed, cache_dir, nonspeech, no_mlflow) -> None:
    """Train lstm, gru and rnn with the default preset and export them to ONNX."""
    from .config import apply_overrides, preset
    from .train import RunOptions, run

    with tempfile.TemporaryDirectory(prefix="gvd-release-") as tmp:
        train_dir = Path(keep) if keep else Path(tmp)
        config = apply_overrides(preset("default"), {"seed": seed})
        summary = run(config, RunOptions(data=list(data), out=str(train_dir), cells=CELLS,
                                         loco=loco, mlflow=not no_mlflow, cache_dir=cache_dir,
                                         nonspeech=tuple(nonspeech)))
        click.echo(f"trained in {summary['wall_seconds']:.0f} s -> {train_dir}")
        # The exporter reads the labelled test windows training wrote next to each training.json.
        command = [sys.executable, "-m", "edge", "export", "--train-dir", str(train_dir), "--out", str(out)]
        click.echo("exporting: " + " ".join(command))
        result = subprocess.run(command, check=False)
        if result.returncode:
            raise click.ClickException(f"export failed with exit code {result.returncode}")


if __name__ == "__main__":
    main()
