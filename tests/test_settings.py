"""FeatureSettings: the contract between training and the runtime must round-trip and refuse guesses.

Only the fields every version of the settings keeps (rate, windows, minimum speech, n_features) are
named here, so the feature front end can change without touching these tests.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from edge.errors import ModelError
from edge.settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS, SCHEMA_VERSION, FeatureSettings


@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, ORIGINAL_SETTINGS,
                                      DEFAULT_SETTINGS.with_changes(window_hop_seconds=0.5)])
def test_json_round_trip(settings):
    text = settings.to_json()
    assert json.loads(text)["schema"] == SCHEMA_VERSION
    again = FeatureSettings.from_json(text)
    assert again == settings
    assert again.to_json() == text


def test_derived_sample_counts():
    s = DEFAULT_SETTINGS.with_changes(window_seconds=3.0, window_hop_seconds=0.5, min_speech_seconds=0.5)
    rate = s.sample_rate
    assert (s.window_samples, s.window_hop_samples, s.min_speech_samples) == (3 * rate, rate // 2, rate // 2)


def test_model_input_width_is_positive():
    assert isinstance(DEFAULT_SETTINGS.n_features, int) and DEFAULT_SETTINGS.n_features > 0


def test_original_recipe_uses_non_overlapping_windows():
    assert ORIGINAL_SETTINGS.window_hop_seconds == ORIGINAL_SETTINGS.window_seconds
    assert ORIGINAL_SETTINGS != DEFAULT_SETTINGS


def test_unknown_key_is_refused_with_its_name():
    data = DEFAULT_SETTINGS.to_dict() | {"spectral_tilt": 0.5}
    with pytest.raises(ModelError, match="spectral_tilt"):
        FeatureSettings.from_dict(data)


def test_newer_schema_is_refused():
    data = DEFAULT_SETTINGS.to_dict() | {"schema": SCHEMA_VERSION + 1}
    with pytest.raises(ModelError, match="schema"):
        FeatureSettings.from_dict(data)


@pytest.mark.parametrize("change", [
    {"sample_rate": 0}, {"min_speech_seconds": 0.0}, {"min_speech_seconds": DEFAULT_SETTINGS.window_seconds + 1},
    {"window_hop_seconds": 0.0},
])
def test_invalid_values(change):
    with pytest.raises(ValueError):
        DEFAULT_SETTINGS.with_changes(**change)
    with pytest.raises(ModelError, match="invalid"):
        FeatureSettings.from_dict(DEFAULT_SETTINGS.to_dict() | change)


def test_wrong_types_are_refused_as_model_errors():
    with pytest.raises(ModelError):
        FeatureSettings.from_dict(DEFAULT_SETTINGS.to_dict() | {"window_seconds": "three"})


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"a string"'])
def test_malformed_json(text):
    with pytest.raises(ModelError):
        FeatureSettings.from_json(text)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_SETTINGS.window_seconds = 2.0  # type: ignore[misc]
    assert DEFAULT_SETTINGS.with_changes(window_seconds=2.0).window_seconds == 2.0
    assert DEFAULT_SETTINGS.window_seconds != 2.0
