"""The labelled clean test windows of a run, written next to each cell's ``training.json``.

The export step reads them (format: :mod:`edge.labelled_windows`) to prove parity on every test
window and to judge int8 by clip accuracy, so export never re-runs training code.

For a run trained before this file existed, rebuild it from the feature cache:

    python -m train.test_windows --data ../shared/data --train-dir DIR [--cache-dir DIR]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from edge.labelled_windows import TEST_WINDOWS_NAME, LabelledWindows, write_labelled_windows

from .data import Recording
from .dataset import Windows


def select_test_windows(windows: Windows, recordings: Sequence[Recording],
                        test_indices: Sequence[int]) -> LabelledWindows:
    """The clean (variant 0) windows of the recordings ``test_indices``, with their labels."""
    # Non-speech recordings have no sex label: they are the speech output's test, not this file's.
    wanted = {i for i in test_indices if recordings[i].is_speech}
    picked = [i for i, (rec, variant) in enumerate(zip(windows.recording, windows.variant, strict=True))
              if rec in wanted and variant == 0]
    recs = [recordings[windows.recording[i]] for i in picked]
    n_features = windows.features[0].shape[1] if len(windows) else 0
    return LabelledWindows.from_windows(
        [windows.features[i] for i in picked], [r.y for r in recs], [float(windows.speech[i]) for i in picked],
        [r.key for r in recs], [r.corpus for r in recs], n_features)


def write_test_windows(cell_dir: str | Path, windows: Windows, recordings: Sequence[Recording],
                       test_indices: Sequence[int]) -> Path:
    """Write ``cell_dir/test_windows.npz``; returns its path."""
    return write_labelled_windows(Path(cell_dir) / TEST_WINDOWS_NAME,
                                  select_test_windows(windows, recordings, test_indices))


def _run_config(train_dir: Path) -> tuple[dict, str, list[Path]]:
    """The one training config and data hash of every cell in ``train_dir``, and the cell folders."""
    cells = sorted(d for d in train_dir.iterdir() if (d / "training.json").is_file())
    if not cells:
        raise click.ClickException(f"no <cell>/training.json under {train_dir}")
    records = [json.loads((d / "training.json").read_text(encoding="utf-8")) for d in cells]
    if any("train_config" not in r for r in records):
        raise click.ClickException("a training.json has no train_config: cannot rebuild its test split")
    keys = {json.dumps([r["train_config"], r.get("data_manifest_sha256", "")], sort_keys=True) for r in records}
    if len(keys) != 1:
        raise click.ClickException("the cells were trained on different data, splits or features")
    return records[0]["train_config"], records[0].get("data_manifest_sha256", ""), cells


def rebuild(data: Sequence[str], train_dir: Path, cache_dir: str | None = None) -> LabelledWindows:
    """Rebuild a finished run's test split (same data, features, split and seed) and write it into every cell."""
    from .config import apply_overrides, preset
    from .data import speaker_split
    from .train import RunOptions, prepare

    raw, manifest_sha, cells = _run_config(train_dir)
    overrides = {k: v for k, v in raw.items() if k != "preset"}
    overrides["augment"] = {**(raw.get("augment") or {}), "variants": 0}  # clean windows only
    config = apply_overrides(preset(raw.get("preset", "default")), overrides)
    prepared = prepare(config, RunOptions(data=list(data), cache_dir=cache_dir, progress=False))
    if manifest_sha and prepared.manifest_sha256 != manifest_sha:
        raise click.ClickException(f"the data manifest hash {prepared.manifest_sha256[:12]} differs from "
                                   f"training's {manifest_sha[:12]}: not the data the models were trained on")
    recs = prepared.recordings
    test_keys = {r.key for r in speaker_split(recs, config.split, seed=config.seed)["test"]}
    labelled = select_test_windows(prepared.windows, recs, [i for i, r in enumerate(recs) if r.key in test_keys])
    if not len(labelled):
        raise click.ClickException("the rebuilt test split holds no windows")
    for cell_dir in cells:
        write_labelled_windows(cell_dir / TEST_WINDOWS_NAME, labelled)
    return labelled


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--train-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--cache-dir", type=click.Path(file_okay=False), help="The training run's feature cache.")
def main(data: tuple[str, ...], train_dir: Path, cache_dir: str | None) -> None:
    """Write <cell>/test_windows.npz for a run trained before training wrote it."""
    labelled = rebuild(data, train_dir, cache_dir)
    clips = len(set(labelled.recordings.tolist()))
    click.echo(f"{train_dir}/<cell>/{TEST_WINDOWS_NAME}: {len(labelled)} windows of {clips} test clips")


if __name__ == "__main__":
    main()
