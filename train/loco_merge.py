"""Put leave-one-corpus-out results from separate runs into a finished run's ``training.json`` files.

Leave-one-corpus-out trains one model per held-out corpus and cell; on a small machine it is quicker
to run it per cell in parallel processes (``gvd train --loco --no-final --cells gru --out A``) next to
the run that trains the shipped models (``gvd train --out B``). This merges A's measured figures into
B, after checking that both runs used the same data, features and recipe, so the model card and the
choice of the default model see them:

    python -m train.loco_merge --into B A C D
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.metadata import SPEECH_OUTPUT_NAME

from .evaluate import choose_speech_threshold
from .reports import loco_summary, loco_table, write_json
from .train import read_loco_windows


def _same_recipe(summary: dict, record: dict) -> bool:
    """Same data (manifest hash) and the same recipe (the whole training config; runs that did not
    record it are compared by preset name)."""
    if summary.get("manifest_sha256") != record.get("data_manifest_sha256"):
        return False
    config = dict(summary.get("train_config") or {})
    if not config:
        return summary.get("preset") == record.get("preset")
    ours = dict(record.get("train_config") or {})
    return {k: v for k, v in config.items() if k != "seed"} == {k: v for k, v in ours.items() if k != "seed"}


def summary_from_table(path: Path, into: Path) -> dict:
    """A run summary rebuilt from a LOCO report's ``loco.json`` (what a LOCO-only run that stopped
    before writing its summary left), taking data hash and recipe from ``into``'s first cell: the
    caller vouches that both runs used them."""
    table = json.loads(path.read_text(encoding="utf-8"))
    record = json.loads(next(into.glob("*/training.json")).read_text(encoding="utf-8"))
    cells: dict = {}
    for by_cell in table.values():
        for cell, t in by_cell.items():
            loco = {}
            for held_out in t["balanced_accuracy"]:
                metrics = {key: t[key].get(held_out) for key in ("accuracy", "balanced_accuracy", "recall_female",
                                                                  "recall_male", "confident_accuracy", "no_speech_rate",
                                                                  "n_clips")}
                metrics["roc_auc"] = t["auc"].get(held_out)
                metrics["heldout_nonspeech"] = t.get("heldout_nonspeech", {}).get(held_out)
                if held_out == "indonesian" and t.get("indonesian_per_format"):
                    per_format = t["indonesian_per_format"].items()
                    metrics["indonesian_per_format"] = {k: {"accuracy": v} for k, v in per_format}
                loco[held_out] = {k: v for k, v in metrics.items() if v is not None}
            cells[cell] = {"loco": loco}
    return {"preset": record.get("preset"), "manifest_sha256": record.get("data_manifest_sha256"), "cells": cells}


def merge(into: Path, runs: list[Path]) -> list[str]:
    """Merge every cell's LOCO metrics found in ``runs`` into ``into/<cell>/training.json``.

    A run is a training output folder (its ``run_summary.json``) or a LOCO report's ``loco.json``.
    """
    merged = []
    tables: dict = {}
    for run in runs:
        clips: dict = {}
        if run.is_file():
            summary = summary_from_table(run, into)
        else:
            summary = json.loads((run / "run_summary.json").read_text(encoding="utf-8"))
            if (run / "loco_clips.csv").is_file():
                clips = read_loco_windows(run / "loco_clips.csv")
        for cell, metrics in summary.get("cells", {}).items():
            loco = metrics.get("loco")
            path = into / cell / "training.json"
            if not loco or not path.is_file():
                continue
            record = json.loads(path.read_text(encoding="utf-8"))
            if not _same_recipe(summary, record):
                raise click.ClickException(f"{run}: {cell} was trained on other data or with another recipe "
                                           f"than {path}")
            record["metrics"]["loco"] = loco
            record["metrics"].update(loco_summary(loco))
            if cell in clips and SPEECH_OUTPUT_NAME in record.get("outputs", []):
                choice = choose_speech_threshold(*clips[cell])
                record["metrics"]["speech_threshold"] = choice.to_dict()
                record["speech_threshold"] = choice.threshold
            write_json(path, record)
            tables.setdefault(summary.get("preset", "default"), {})[cell] = loco
            merged.append(cell)
    if tables:
        markdown, _ = loco_table(tables)
        (into / "loco_table.md").write_text(markdown, encoding="utf-8")
    return merged


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--into", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The run that trained the shipped models (<cell>/training.json).")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def main(into: Path, runs: tuple[Path, ...]) -> None:
    merged = merge(into, list(runs))
    if not merged:
        raise click.ClickException("no LOCO results matched a cell of --into")
    click.echo(f"merged leave-one-corpus-out results of {', '.join(merged)} into {into}")


if __name__ == "__main__":
    main()
