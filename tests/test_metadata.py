"""Model metadata: every key required, older formats only through explicit migrations."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge.decision import SPEECH_THRESHOLD
from edge.errors import ModelError
from edge.metadata import (
    FORMAT_VERSION,
    KEYS_BY_VERSION,
    METADATA_PREFIX,
    MIGRATIONS,
    OUTPUT_NAME,
    SPEECH_OUTPUT_NAME,
    ModelMetadata,
)

from model_fixtures import REPO, test_metadata


def props(**changes: str | None) -> dict[str, str]:
    """Props of the test metadata with some values changed (None removes the key)."""
    values = test_metadata().to_props()
    for key, value in changes.items():
        if value is None:
            values.pop(METADATA_PREFIX + key)
        else:
            values[METADATA_PREFIX + key] = value
    return values


def v1_props() -> dict[str, str]:
    """What an exporter of format 1 wrote: no outputs key."""
    return props(format_version="1", outputs=None, speech_threshold=None)


def v2_props(**changes: str | None) -> dict[str, str]:
    """What an exporter of format 2 wrote: no speech threshold of its own."""
    return props(format_version="2", speech_threshold=None, **changes)


def test_round_trip():
    metadata = replace(test_metadata(), outputs=(OUTPUT_NAME, SPEECH_OUTPUT_NAME), data_manifest_sha256="ab" * 32)
    again = ModelMetadata.from_props(metadata.to_props())
    assert again == metadata and again.has_speech_output


def test_every_current_key_is_written():
    assert sorted(test_metadata().to_props()) == sorted(METADATA_PREFIX + k for k in KEYS_BY_VERSION[FORMAT_VERSION])


@pytest.mark.parametrize("key", [k for k in KEYS_BY_VERSION[FORMAT_VERSION] if k != "format_version"])
def test_every_key_is_required(key):
    with pytest.raises(ModelError, match=f"lacks {METADATA_PREFIX}{key}"):
        ModelMetadata.from_props(props(**{key: None}))


@pytest.mark.parametrize("key", [k for k in KEYS_BY_VERSION[1] if k != "format_version"])
def test_every_key_of_format_1_is_required_too(key):
    values = v1_props()
    values.pop(METADATA_PREFIX + key)
    with pytest.raises(ModelError, match=rf"\(format 1\) lacks {METADATA_PREFIX}{key}"):
        ModelMetadata.from_props(values)


def test_no_gvd_keys_means_not_a_gvd_model():
    with pytest.raises(ModelError, match="not a gvd model"):
        ModelMetadata.from_props({"producer": "someone"})


def test_format_1_migrates_to_a_model_without_speech_output():
    migrated = ModelMetadata.from_props(v1_props())
    assert migrated.outputs == (OUTPUT_NAME,) and not migrated.has_speech_output
    assert migrated.format_version == FORMAT_VERSION
    assert set(MIGRATIONS) == set(range(1, FORMAT_VERSION))  # one step per older format, none skipped


def test_format_2_migrates_to_the_speech_threshold_every_model_then_shared():
    migrated = ModelMetadata.from_props(v2_props(outputs=json.dumps([OUTPUT_NAME, SPEECH_OUTPUT_NAME])))
    assert migrated.has_speech_output and migrated.speech_threshold == SPEECH_THRESHOLD == 0.5
    assert migrated.format_version == FORMAT_VERSION


def test_a_key_format_2_did_not_have_is_refused_in_format_2():
    with pytest.raises(ModelError, match="format 2 does not define.*gvd.speech_threshold"):
        ModelMetadata.from_props(v2_props() | {METADATA_PREFIX + "speech_threshold": "0.7"})


def test_speech_threshold_round_trips_and_is_checked():
    metadata = replace(test_metadata(), outputs=(OUTPUT_NAME, SPEECH_OUTPUT_NAME), speech_threshold=0.65)
    assert ModelMetadata.from_props(metadata.to_props()).speech_threshold == 0.65
    for bad, message in (("1.5", "speech threshold 1.5 is outside"), ("high", "speech threshold 'high' is not")):
        with pytest.raises(ModelError, match=message):
            ModelMetadata.from_props(props(speech_threshold=bad))


def test_a_key_format_1_did_not_have_is_refused_in_format_1():
    values = v1_props() | {METADATA_PREFIX + "outputs": json.dumps([OUTPUT_NAME])}
    with pytest.raises(ModelError, match="format 1 does not define.*gvd.outputs"):
        ModelMetadata.from_props(values)


def test_unknown_key_is_refused():
    with pytest.raises(ModelError, match="gvd.colour"):
        ModelMetadata.from_props(props() | {METADATA_PREFIX + "colour": "red"})


def test_keys_outside_the_prefix_are_ignored():
    assert ModelMetadata.from_props(props() | {"gvd_export.model_config": "{}"}) == test_metadata()


@pytest.mark.parametrize("changes, message", [
    ({"format_version": str(FORMAT_VERSION + 1)}, "upgrade gvd"),
    ({"format_version": "0"}, "format 0 does not exist"),
    ({"format_version": "two"}, "not an integer"),
    ({"labels": json.dumps(["female", "male"])}, "labels"),
    ({"labels": "[male"}, "gvd.labels is not valid JSON"),
    ({"threshold": "1.0"}, "outside"),
    ({"threshold": "high"}, "not a number"),
    ({"cell": "tcn"}, "unknown cell"),
    ({"created": ""}, "gvd.created is empty"),
    ({"model_version": " "}, "gvd.model_version is empty"),
    ({"metrics": "[]"}, "gvd.metrics is not a JSON object"),
    ({"outputs": json.dumps([SPEECH_OUTPUT_NAME])}, "gvd.outputs"),
    ({"outputs": json.dumps([OUTPUT_NAME, "p_male"])}, "gvd.outputs"),
    ({"outputs": json.dumps([OUTPUT_NAME, OUTPUT_NAME])}, "gvd.outputs"),
    ({"feature_settings": "{"}, "not valid JSON"),
])
def test_malformed_values_are_refused(changes, message):
    with pytest.raises(ModelError, match=message):
        ModelMetadata.from_props(props(**changes))


@pytest.mark.parametrize("path", sorted((REPO / "models").glob("*.onnx")), ids=lambda p: p.name)
def test_shipped_models_read_under_the_strict_schema(path):
    onnx = pytest.importorskip("onnx")
    values = {p.key: p.value for p in onnx.load(path).metadata_props}
    metadata = ModelMetadata.from_props(values)
    assert metadata.cell == path.stem.split("_")[0] and metadata.outputs[0] == OUTPUT_NAME
