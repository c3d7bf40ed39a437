"""Run reports: metrics.json, classification report, confusion matrix, ROC, training curves, LOCO table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge.files import atomic_write_text

from .evaluate import OVERLAP_FEMALE_BELOW_HZ, OVERLAP_MALE_ABOVE_HZ, ClipScores


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def classification_report_text(scores: ClipScores, threshold: float) -> str:
    from sklearn.metrics import classification_report

    speech = scores.subset(scores.has_speech & (scores.y >= 0))
    if not len(speech.recordings):
        return "no clip had speech\n"
    pred = (speech.p_female >= threshold).astype(int)
    text = classification_report(speech.y, pred, labels=[0, 1], target_names=["male", "female"], digits=4,
                                 zero_division=0)
    return (f"clip-level (windows aggregated as the runtime does), threshold {threshold:.3f}\n"
            f"clips without speech (not scored): {int((~scores.has_speech).sum())}\n\n{text}")


def confusion_png(path: Path, scores: ClipScores, threshold: float, title: str) -> None:
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    speech = scores.subset(scores.has_speech & (scores.y >= 0))
    if not len(speech.recordings):
        return
    matrix = confusion_matrix(speech.y, (speech.p_female >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["male", "female"])
    ax.set_yticks([0, 1], ["male", "female"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def roc_png(path: Path, curves: dict[str, ClipScores], title: str) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, scores in curves.items():
        speech = scores.subset(scores.has_speech & (scores.y >= 0))
        if len(np.unique(speech.y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(speech.y, speech.p_female)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(speech.y, speech.p_female):.3f})")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set_xlabel("false female rate")
    ax.set_ylabel("true female rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_png(path: Path, histories: dict[str, dict[str, list[float]]], title: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, history in histories.items():
        epochs = np.arange(1, len(history.get("loss", [])) + 1)
        axes[0].plot(epochs, history["loss"], label=f"{name} train")
        axes[0].plot(epochs, history["val_loss"], "--", label=f"{name} val")
        axes[1].plot(epochs, history["accuracy"], label=f"{name} train")
        axes[1].plot(epochs, history["val_accuracy"], "--", label=f"{name} val")
    axes[0].set_title("loss (window level)", fontsize=9)
    axes[1].set_title("accuracy (window level)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(value: float | None) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.1f} %"


def _both_sexes(metrics: dict) -> bool:
    """The held-out corpus has women and men (female and male recall both measured)."""
    return metrics.get("recall_female") is not None and metrics.get("recall_male") is not None


def _worst(folds: dict[str, dict], both_sexes: bool) -> tuple[str, dict] | None:
    """The held-out corpus with the lowest balanced accuracy among those with (or without) both sexes."""
    rows = [(h, m) for h, m in folds.items() if _both_sexes(m) == both_sexes and "balanced_accuracy" in m]
    return min(rows, key=lambda kv: kv[1]["balanced_accuracy"], default=None)


def heldout_nonspeech(loco: dict[str, dict]) -> dict[str, Any] | None:
    """Non-speech sources held out across the folds, added up: clips, how many got no gender, and
    the clips that were given one."""
    parts = [m["heldout_nonspeech"] for m in loco.values() if m.get("heldout_nonspeech")]
    if not parts:
        return None
    clips, rejected = sum(p["clips"] for p in parts), sum(p["rejected"] for p in parts)
    return {"clips": clips, "rejected": rejected, "rejected_share": rejected / clips if clips else None,
            "given_gender": sorted(name for p in parts for name in p["given_gender"])}


def loco_summary(loco: dict[str, dict]) -> dict[str, Any]:
    """The LOCO figures that travel with a model: per held-out corpus, and the headline - the worst
    balanced accuracy over held-out corpora with both sexes (the default model is chosen by it); the
    worst plain accuracy over single-sex corpora is reported beside it."""
    both, single = _worst(loco, both_sexes=True), _worst(loco, both_sexes=False)
    nonspeech = heldout_nonspeech(loco)
    return {
        **({"loco_nonspeech": nonspeech} if nonspeech else {}),
        "loco_clip_accuracy": {h: m.get("accuracy") for h, m in loco.items()},
        "loco_balanced_accuracy": {h: m.get("balanced_accuracy") for h, m in loco.items()},
        "loco_worst_balanced_accuracy": both[1]["balanced_accuracy"] if both else None,
        "loco_worst_single_sex_accuracy": single[1].get("accuracy") if single else None,
    }


def pitch_overlap_total(folds: dict[str, dict]) -> dict[str, list[int]]:
    """[right, clips] in the pitch overlap summed over the folds (each held-out clip is in one fold);
    empty when no fold measured it."""
    total: dict[str, list[int]] = {}
    for metrics in folds.values():
        for group, (right, n) in (metrics.get("pitch_overlap") or {}).items():
            kept = total.setdefault(group, [0, 0])
            kept[0] += right
            kept[1] += n
    return total


def loco_table(results: dict[str, dict[str, dict[str, dict]]]) -> tuple[str, dict]:
    """Markdown and JSON of the leave-one-corpus-out results, worst held-out corpus first.

    ``results[preset][cell][held_out]`` is a metrics dict from :func:`train.evaluate.evaluate`. The
    headline per cell is the worst balanced accuracy (mean of female and male recall) over the held-out
    corpora with both sexes, never the mean (as :func:`loco_summary`); the worst single-sex corpus
    (plain accuracy) stands beside it.
    """
    lines: list[str] = []
    table: dict = {}
    for preset_name, cells in results.items():
        for cell, folds in cells.items():
            rows = sorted(folds.items(), key=lambda kv: kv[1].get("balanced_accuracy", -1.0))
            worst, single = _worst(folds, both_sexes=True), _worst(folds, both_sexes=False)
            lines += [f"#### {preset_name} {cell}: worst held-out corpus with both sexes "
                      f"{worst[0] if worst else '—'} {_pct(worst[1]['balanced_accuracy'] if worst else None)}"
                      f"; worst single-sex {single[0] if single else '—'} "
                      f"{_pct(single[1].get('accuracy') if single else None)}", "",
                      "| held-out | clips | balanced acc. | female recall | male recall | ROC AUC | "
                      "right when ≥ 0.9 sure (share) | lost to no_speech |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for held_out, m in rows:
                auc = m.get("roc_auc")
                lines.append(
                    f"| {held_out} | {m.get('n_clips', 0)} | {_pct(m.get('balanced_accuracy'))} | "
                    f"{_pct(m.get('recall_female'))} | {_pct(m.get('recall_male'))} | "
                    f"{'—' if auc is None else f'{auc:.3f}'} | {_pct(m.get('confident_accuracy'))} "
                    f"({_pct(m.get('confident_share'))}) | {_pct(m.get('no_speech_rate'))} |")
            fmt = folds.get("indonesian", {}).get("indonesian_per_format", {})
            if fmt:
                lines.append("")
                lines.append("Indonesian held out, per codec: " + ", ".join(
                    f"{k} {_pct(v.get('accuracy'))} ({v.get('n_clips', 0)} clips)" for k, v in sorted(fmt.items())))
            overlap = pitch_overlap_total(folds)
            if overlap:
                lines += ["", "In the pitch overlap (held-out clips by their median F0): " + "; ".join(
                    f"{label} {_pct(right / n if n else None)} right ({right} of {n})"
                    for label, (right, n) in ((f"women under {OVERLAP_FEMALE_BELOW_HZ:.0f} Hz", overlap["female_low"]),
                                              (f"men over {OVERLAP_MALE_ABOVE_HZ:.0f} Hz", overlap["male_high"])))]
            nonspeech = heldout_nonspeech(folds)
            if nonspeech:
                lines += ["", f"Non-speech sources held out (each in one fold): {nonspeech['rejected']} of "
                              f"{nonspeech['clips']} clips got no gender"
                              + (f"; given one: {', '.join(nonspeech['given_gender'])}" if nonspeech["given_gender"]
                                 else "")]
            lines.append("")
            table.setdefault(preset_name, {})[cell] = {
                "heldout_nonspeech": {h: m.get("heldout_nonspeech") for h, m in folds.items()},
                "worst": {"held_out": worst[0], "balanced_accuracy": worst[1]["balanced_accuracy"]} if worst
                else None,
                "worst_single_sex": {"held_out": single[0], "accuracy": single[1].get("accuracy")} if single
                else None,
                "balanced_accuracy": {h: m.get("balanced_accuracy") for h, m in folds.items()},
                "accuracy": {h: m.get("accuracy") for h, m in folds.items()},
                "recall_female": {h: m.get("recall_female") for h, m in folds.items()},
                "recall_male": {h: m.get("recall_male") for h, m in folds.items()},
                "auc": {h: m.get("roc_auc") for h, m in folds.items()},
                "confident_accuracy": {h: m.get("confident_accuracy") for h, m in folds.items()},
                "no_speech_rate": {h: m.get("no_speech_rate") for h, m in folds.items()},
                "indonesian_per_format": {k: v.get("accuracy") for k, v in fmt.items()},
                "n_clips": {h: m.get("n_clips") for h, m in folds.items()},
                "pitch_overlap": overlap,
            }
    return "\n".join(lines) + "\n", table


def write_cell_report(folder: Path, cell: str, metrics: dict, scores: ClipScores, threshold: float,
                      histories: dict[str, dict[str, list[float]]], loco_scores: dict[str, ClipScores],
                      loco_md: str | None, loco_json: dict | None) -> Path:
    """Everything a reader needs to judge one trained cell, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", metrics)
    (folder / "classification_report.txt").write_text(classification_report_text(scores, threshold), encoding="utf-8")
    confusion_png(folder / "confusion_matrix.png", scores, threshold, f"{cell}: held-out speakers (test split)")
    roc_png(folder / "roc_curve.png", {"test split": scores, **{f"LOCO {k}": v for k, v in loco_scores.items()}},
            f"{cell}: clip-level ROC")
    curves_png(folder / "training_curves.png", histories, f"{cell}: training curves")
    if loco_md is not None:
        (folder / "loco.md").write_text(loco_md, encoding="utf-8")
        write_json(folder / "loco.json", loco_json)
    return folder


def _flatten_numbers(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten_numbers(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if np.isfinite(value):
            out[prefix] = float(value)


def log_mlflow(config, summary: dict, recordings, report_dirs: dict[str, Path], out_dir: Path | None,
               cells) -> str:
    """One MLflow run per ``gvd train``: params, clip metrics, reports, data manifest and models.

    Local ``./mlruns`` file store unless MLFLOW_TRACKING_URI (and _USERNAME/_PASSWORD) say otherwise.
    """
    import os
    import tempfile

    from edge.errors import require

    from .data import manifest

    mlflow = require("mlflow", "train", "experiment tracking")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        # MLflow 3.x keeps the file store only behind this opt-in; a local ./mlruns needs no server.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(Path("mlruns").resolve().as_uri())
    mlflow.set_experiment("gvd")
    with mlflow.start_run(run_name=f"{config.preset}-{summary['created']}") as active:
        params = {k: str(v)[:500] for k, v in config.params().items()}
        params["data.manifest_sha256"] = summary["manifest_sha256"]
        params["cells"] = ",".join(cells)
        mlflow.log_params(params)
        numbers: dict[str, float] = {}
        for cell, metrics in summary.get("cells", {}).items():
            _flatten_numbers(cell, {k: v for k, v in metrics.items() if k != "confusion"}, numbers)
        _flatten_numbers("loco_table", summary.get("loco", {}), numbers)
        _flatten_numbers("seconds", summary.get("train_seconds", {}), numbers)
        numbers["seconds.wall"] = float(summary.get("wall_seconds", 0.0))
        numbers = {k.replace("/", "_"): v for k, v in numbers.items() if "confusion" not in k}
        mlflow.log_metrics(numbers)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "data_manifest.json"
            write_json(path, manifest(recordings))
            mlflow.log_artifact(str(path))
            path = Path(tmp) / "run_summary.json"
            write_json(path, summary)
            mlflow.log_artifact(str(path))
        for name, folder in report_dirs.items():
            mlflow.log_artifacts(str(folder), artifact_path=f"reports/{name}")
        if out_dir is not None:
            for cell in cells:
                for file in ("model.keras", "training.json"):
                    if (out_dir / cell / file).exists():
                        mlflow.log_artifact(str(out_dir / cell / file), artifact_path=f"models/{cell}")
        return active.info.run_id
