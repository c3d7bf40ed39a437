"""training.json -> model metadata: what export writes into every model, including its outputs."""

from __future__ import annotations

import json

import pytest

from edge.metadata import OUTPUT_NAME, SPEECH_OUTPUT_NAME, ModelMetadata
from edge.settings import DEFAULT_SETTINGS
from export.describe import TrainingRecord
from export.errors import ExportError


def training_json(folder, **changes):
    record = {"cell": "gru", "model_config": {"cell": "gru"}, "feature_settings": DEFAULT_SETTINGS.to_dict(),
              "threshold": 0.5, "created": "2026-01-01T00:00:00Z", "model_version": "test-1",
              "data_manifest_sha256": "ab" * 32, "license": "test only"} | changes
    path = folder / "training.json"
    path.write_text(json.dumps(record))
    return path


def test_a_run_without_outputs_has_p_female_only(tmp_path):
    metadata = TrainingRecord.load(training_json(tmp_path)).metadata()
    assert metadata.outputs == (OUTPUT_NAME,)
    assert ModelMetadata.from_props(metadata.to_props()) == metadata


def test_a_speech_head_reaches_the_metadata(tmp_path):
    record = TrainingRecord.load(training_json(tmp_path, outputs=[OUTPUT_NAME, SPEECH_OUTPUT_NAME]))
    metadata = record.metadata({"export": {"opset": 17}})
    assert metadata.has_speech_output and metadata.metrics["export"] == {"opset": 17}
    assert ModelMetadata.from_props(metadata.to_props()) == metadata


@pytest.mark.parametrize("outputs", [[], [SPEECH_OUTPUT_NAME], [OUTPUT_NAME, "p_male"]])
def test_other_outputs_are_refused(tmp_path, outputs):
    with pytest.raises(ExportError, match="outputs"):
        TrainingRecord.load(training_json(tmp_path, outputs=outputs))


def test_the_speech_threshold_chosen_in_training_reaches_the_metadata(tmp_path):
    record = TrainingRecord.load(training_json(tmp_path, outputs=[OUTPUT_NAME, SPEECH_OUTPUT_NAME],
                                               speech_threshold=0.65))
    assert record.metadata().speech_threshold == 0.65
    assert TrainingRecord.load(training_json(tmp_path)).metadata().speech_threshold == 0.5  # older runs
    with pytest.raises(ExportError, match=r"speech_threshold 0.3 is outside \[0.5, 1\)"):
        TrainingRecord.load(training_json(tmp_path, speech_threshold=0.3))
