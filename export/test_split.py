"""Write the whole test split of a training run as labelled parity windows.

    python -m export.test_split --data ../shared/data --train-dir DIR --out test_windows.npz
    gvd export --train-dir DIR --out models --windows test_windows.npz

Training ships only a sample of test windows (parity_windows.npz, unlabelled). This rebuilds the
exact test split of the run (same data, feature settings, split fractions and seed, read from
training.json; the data manifest hash must match) from the training feature cache, so that parity
covers every test window and int8 is judged on real clip accuracy. The windows are written with
``label_<i>`` (1 = female), ``clip_<i>`` and ``speech_<i>`` (see export.parity). It reads the
cached features; when most of them are missing it stops rather than re-extracting the corpora.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from .errors import ExportError


def _train_config(train_dir: Path) -> tuple[dict, str]:
    records = [json.loads((d / "training.json").read_text()) for d in sorted(train_dir.iterdir())
               if (d / "training.json").is_file()]
    if not records:
        raise ExportError(f"no <cell>/training.json under {train_dir}")
    configs = [r.get("train_config") for r in records]
    if any(c is None for c in configs):
        raise ExportError("training.json has no train_config: cannot rebuild the test split")
    keys = [(c.get("split"), c.get("seed"), json.dumps(c.get("features"), sort_keys=True),
             r.get("data_manifest_sha256")) for c, r in zip(configs, records)]
    if len(set(map(str, keys))) != 1:
        raise ExportError("the cells were trained on different data, splits or features; export them one by one")
    return configs[0], records[0].get("data_manifest_sha256", "")


def build_test_windows(data: list[str], train_dir: Path, cache_dir: str | None = None,
                       max_missing: float = 0.05) -> dict[str, np.ndarray]:
    from train.config import apply_overrides, preset
    from train.data import load_corpora, speaker_split
    from train.dataset import cache_key, default_cache_dir
    from train.train import RunOptions, prepare

    raw, manifest_sha = _train_config(train_dir)
    overrides = {k: v for k, v in raw.items() if k != "preset"}
    overrides["augment"] = {**(raw.get("augment") or {}), "variants": 0}  # clean windows only
    config = apply_overrides(preset(raw.get("preset", "default")), overrides)

    # Refuse a long re-extraction: check the clean-window cache first.
    recordings, _ = load_corpora(data)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    def cached(rec) -> bool:  # the cache layout of train.dataset: <key[:2]>/<key>.npz
        key = cache_key(rec.sha256, config.features, None, 0, 0)
        return (folder / key[:2] / f"{key}.npz").is_file()

    missing = sum(not cached(r) for r in recordings)
    if missing > max_missing * max(len(recordings), 1):
        raise ExportError(f"{missing} of {len(recordings)} recordings have no cached features in {folder}; "
                          "pass the training run's --cache-dir")
    prepared = prepare(config, RunOptions(data=list(data), cache_dir=cache_dir, progress=False))
    if manifest_sha and prepared.manifest_sha256 != manifest_sha:
        raise ExportError(f"the data manifest hash {prepared.manifest_sha256[:12]} differs from training's "
                          f"{manifest_sha[:12]}: not the data the models were trained on")
    recs = prepared.recordings
    split = speaker_split(recs, config.split, seed=config.seed)
    test_keys = {r.key for r in split["test"]}
    test = {i for i, r in enumerate(recs) if r.key in test_keys}
    windows = prepared.windows
    out: dict[str, np.ndarray] = {}
    k = 0
    for features, speech, rec, variant in zip(windows.features, windows.speech, windows.recording, windows.variant):
        if variant != 0 or rec not in test:
            continue
        out[f"features_{k}"] = np.ascontiguousarray(features, dtype=np.float32)
        out[f"label_{k}"] = np.array(recs[rec].y)
        out[f"clip_{k}"] = np.array(rec)
        out[f"speech_{k}"] = np.array(float(speech))
        k += 1
    if not k:
        raise ExportError("the rebuilt test split holds no windows")
    return out


@click.command()
@click.option("--data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--train-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cache-dir", type=click.Path(file_okay=False), help="The training run's feature cache.")
def main(data: tuple[str, ...], train_dir: Path, out: Path, cache_dir: str | None) -> None:
    """Write the test split of a training run as labelled parity windows (.npz)."""
    try:
        arrays = build_test_windows(list(data), train_dir, cache_dir)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    np.savez(out, **arrays)
    clips = len({int(v) for k, v in arrays.items() if k.startswith("clip_")})
    click.echo(f"{out}: {sum(k.startswith('features_') for k in arrays)} windows of {clips} test clips")


if __name__ == "__main__":
    sys.exit(main())
