"""End to end on real recordings: a tiny model, a few shared files, reports and an MLflow run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edge.settings import FeatureSettings


def _pick(shared: Path, tmp: Path) -> Path:
    """A small <root>/<label>/ corpus of symlinks to shared files (nothing is copied)."""
    picks = {
        "female": sorted((shared / "ravdess" / "Actor_02").glob("*.flac"))[:6]
        + sorted((shared / "urdu" / "Happy").glob("SF*.flac"))[:4],
        "male": sorted((shared / "ravdess" / "Actor_01").glob("*.flac"))[:6]
        + sorted((shared / "urdu" / "Happy").glob("SM*.flac"))[:4],
    }
    for label, files in picks.items():
        (tmp / "data" / label).mkdir(parents=True)
        for f in files:
            os.symlink(f, tmp / "data" / label / f.name)
    return tmp / "data"


def _speech_only(tmp_path):
    """A config without the speech output's non-speech data (1,100 clips: too slow for a tiny run)."""
    path = tmp_path / "speech_only.json"
    path.write_text(json.dumps({"nonspeech_fraction": 0.0}))
    return path


@pytest.mark.shared
@pytest.mark.slow
def test_tiny_training_writes_reports_models_and_mlflow_run(shared_data, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from train.cli import train

    data = _pick(shared_data, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(train, [
        "--data", str(data), "--cells", "gru", "--epochs", "2", "--steps-per-epoch", "3", "--units", "8",
        "--layers", "1", "--unidirectional", "--augment-variants", "1", "--out", "out", "--cache-dir", "cache",
        "--quiet", "--threads", "1", "--workers", "1", "--config", str(_speech_only(tmp_path)),
    ])
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "out" / "gru" / "training.json").read_text())
    assert training["cell"] == "gru" and training["preset"] == "default"
    assert 0.0 <= training["metrics"]["accuracy"] <= 1.0 and training["metrics"]["n_clips"] > 0
    assert len(training["data_manifest_sha256"]) == 64
    assert (tmp_path / "out" / "gru" / "model.keras").stat().st_size > 0
    parity = np.load(tmp_path / "out" / "gru" / "parity_windows.npz")
    width = FeatureSettings.from_dict(training["feature_settings"]).n_features
    assert parity.files and all(parity[k].ndim == 2 and parity[k].shape[1] == width for k in parity.files)
    report = next((tmp_path / "reports").glob("gru_*"))
    metrics = json.loads((report / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and np.isfinite(metrics["test"]["roc_auc"])
    for name in ("classification_report.txt", "confusion_matrix.png", "roc_curve.png", "training_curves.png"):
        assert (report / name).stat().st_size > 0
    # The MLflow file store holds one run with the metrics and the artifacts.
    meta = list((tmp_path / "mlruns").rglob("meta.yaml"))
    assert meta
    metric_files = list((tmp_path / "mlruns").rglob("metrics/gru.test.accuracy")) or list(
        (tmp_path / "mlruns").rglob("gru.test.accuracy"))
    assert metric_files
    value = float(metric_files[0].read_text().split()[1])
    assert value == pytest.approx(metrics["test"]["accuracy"])
    assert list((tmp_path / "mlruns").rglob("data_manifest.json"))


@pytest.mark.shared
@pytest.mark.slow
def test_final_models_and_loco_in_one_run_write_both_reports(shared_data, tmp_path, monkeypatch):
    """The final cell's report takes each LOCO fold's training curve and scores (``make models`` does both)."""
    from click.testing import CliRunner

    from train.cli import train

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(train, [
        "--data", str(shared_data / "arctic"), "--data", str(shared_data / "hindi_digits"), "--cells", "rnn",
        "--loco", "--epochs", "1", "--steps-per-epoch", "2", "--units", "8", "--augment-variants", "0",
        "--out", "out", "--cache-dir", "cache", "--quiet", "--threads", "1", "--workers", "1", "--no-mlflow",
        "--config", str(_speech_only(tmp_path)),
    ])
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "out" / "rnn" / "training.json").read_text())
    assert set(training["metrics"]["loco"]) == {"read_small", "digits"}
    assert (tmp_path / "out" / "loco_clips.csv").stat().st_size > 0
    report = next((tmp_path / "reports").glob("rnn_*"))
    assert (report / "training_curves.png").stat().st_size > 0
