"""``gvd train``: LSTM, RNN and GRU from labelled corpora, evaluated on speakers and corpora never seen.

Only click is imported at module level: ``gvd --help`` imports every command module.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge.metadata import CELLS as CELL_CHOICES


def _cells(value: str) -> tuple[str, ...]:
    cells = tuple(c.strip().lower() for c in value.split(",") if c.strip())
    bad = [c for c in cells if c not in CELL_CHOICES]
    if bad or not cells:
        raise click.BadParameter(f"cells must be a comma list of {', '.join(CELL_CHOICES)}; got {value!r}")
    return cells


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Corpus folder (repeatable): the shared root (expands to indonesian, ravdess, urdu), one "
                   "shared corpus, or any <root>/<label>/** folder (female/male or cewe/cowo, optional speakers.csv).")
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "original"]),
              help="'original' reproduces the university recipe exactly (the baseline).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON or TOML file overriding any training option (keys of train.config.TrainConfig).")
@click.option("--cells", default="lstm,gru,rnn", show_default=True, help="Which recurrent cells to train.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write <out>/<cell>/model.keras, training.json, test_windows.npz, parity_windows.npz "
                   "(the export input).")
@click.option("--seed", type=int, help="Seed for the split, sampling, augmentation and initialisation.")
@click.option("--epochs", type=int, help="Maximum epochs.")
@click.option("--patience", type=int, help="Early-stopping patience (epochs without validation improvement).")
@click.option("--batch-size", type=int)
@click.option("--learning-rate", "--lr", "learning_rate", type=float)
@click.option("--steps-per-epoch", type=int, help="Batches per epoch (0 = one pass over the windows).")
@click.option("--units", type=int, help="Recurrent units per layer (every cell).")
@click.option("--layers", type=int, help="Recurrent layers (every cell).")
@click.option("--bidirectional/--unidirectional", default=None)
@click.option("--pooling", type=click.Choice(["last", "mean", "meanmax"]))
@click.option("--dense-units", type=int, help="Hidden ReLU layer before the output (0 = none).")
@click.option("--dropout", type=float)
@click.option("--augment-variants", type=int, help="Augmented copies of every training recording (0 = none).")
@click.option("--feature-norm", type=click.Choice(["none", "cmn", "cmvn"]), help="Per-window MFCC normalisation.")
@click.option("--window-hop", "window_hop_seconds", type=float, help="Hop between analysis windows, seconds.")
@click.option("--vad/--no-vad", default=None, help="Train (and run) only on speech frames.")
@click.option("--balance/--no-balance", default=None, help="Sample corpora and genders equally.")
@click.option("--loco", is_flag=True, help="Leave-one-corpus-out evaluation (train on the others, test on each).")
@click.option("--baseline", is_flag=True, help="With --loco: also run the original recipe, for a side-by-side table.")
@click.option("--no-final", is_flag=True, help="Skip the models trained on the speaker split of all data.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Feature cache (default ~/.cache/gvd/features).")
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--threads", type=int, help="TensorFlow intra-op threads (default 2).")
@click.option("--workers", type=int, help="Processes for feature extraction (default 2).")
@click.option("--nonspeech", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Extra folder of non-speech audio for the speech output (repeatable); the installed "
                   "packages' sounds and synthetic clips are always used when the recipe trains that output.")
@click.option("--no-mlflow", is_flag=True, help="Do not track the run in MLflow.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data, preset, config_file, cells, out, loco, baseline, no_final, cache_dir, reports_dir, nonspeech, no_mlflow,
          quiet, **tuning) -> None:
    """Train LSTM, RNN and GRU voice-gender models and evaluate them on unseen speakers and corpora."""
    from edge.errors import require

    require("tensorflow", "train", "gvd train")
    require("sklearn", "train", "gvd train")
    from .config import apply_overrides, read_config_file
    from .config import preset as load_preset
    from .data import DataError
    from .train import RunOptions, run

    try:
        config = load_preset(preset)
        if config_file:
            config = apply_overrides(config, read_config_file(config_file))
        config = apply_overrides(config, _overrides(tuning))
        options = RunOptions(data=list(data), out=out, cells=_cells(cells), loco=loco, baseline=baseline,
                             final=not no_final, mlflow=not no_mlflow, cache_dir=cache_dir, reports_dir=reports_dir,
                             progress=not quiet, nonspeech=tuple(nonspeech))
        if not options.final and not options.loco:
            raise click.UsageError("--no-final without --loco leaves nothing to train")
        summary = run(config, options)
    except (DataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_summary(summary, out)


_MODEL_OPTIONS = ("units", "layers", "bidirectional", "pooling", "dense_units", "dropout")
_FEATURE_OPTIONS = ("feature_norm", "vad", "window_hop_seconds")


def _overrides(tuning: dict) -> dict:
    """TrainConfig overrides from the options given on the command line (None = not given)."""
    given = {key: value for key, value in tuning.items() if value is not None}
    overrides = {key: value for key, value in given.items()
                 if key not in (*_MODEL_OPTIONS, *_FEATURE_OPTIONS, "augment_variants")}
    model_changes = {key: given[key] for key in _MODEL_OPTIONS if key in given}
    if model_changes:
        overrides["models"] = {cell: model_changes for cell in CELL_CHOICES}
    feature_changes = {key: given[key] for key in _FEATURE_OPTIONS if key in given}
    if feature_changes:
        overrides["features"] = feature_changes
    if "augment_variants" in given:
        overrides["augment"] = {"variants": given["augment_variants"]}
    return overrides


def _print_summary(summary: dict, out: str | None) -> None:
    click.echo(f"recordings: {summary['n_recordings']} from {', '.join(summary['corpora'])}; "
               f"duplicates dropped: {len(summary['duplicates_dropped'])}; "
               f"same-audio pairs merged: {len(summary['same_audio_merged'])}; failed: {len(summary['failed'])}")
    for cell, metrics in summary["cells"].items():
        line = f"{cell}: "
        if "accuracy" in metrics:
            line += f"test clip accuracy {metrics['accuracy']:.3f} (AUC {metrics.get('roc_auc', float('nan')):.3f})"
        if metrics.get("loco"):
            line += "  LOCO " + ", ".join(f"{h} {m.get('accuracy', float('nan')):.3f}"
                                          for h, m in metrics["loco"].items())
        click.echo(line)
    if "loco" in summary["reports"]:
        table = (Path(summary["reports"]["loco"]) / "loco.md").read_text(encoding="utf-8")
        click.echo("\nleave-one-corpus-out clip accuracy:\n" + table)
    for name, folder in summary["reports"].items():
        click.echo(f"report {name}: {folder}")
    if out:
        click.echo(f"models: {out}/<cell>/model.keras + training.json + test_windows.npz")
    if summary.get("mlflow_run_id"):
        click.echo(f"mlflow run: {summary['mlflow_run_id']}")
    click.echo(f"wall time: {summary['wall_seconds']:.0f} s")
