"""FeatureSettings: the contract between training and the runtime must round-trip and refuse guesses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edge.errors import ModelError
from edge.settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS, SCHEMA_VERSION, FeatureSettings


@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, ORIGINAL_SETTINGS,
                                      FeatureSettings(fmax=7600.0, window_hop_seconds=0.5, feature_norm="cmn")])
def test_json_round_trip(settings):
    text = settings.to_json()
    assert json.loads(text)["schema"] == SCHEMA_VERSION
    again = FeatureSettings.from_json(text)
    assert again == settings
    assert again.to_json() == text


def test_derived_sample_counts():
    s = FeatureSettings(window_seconds=3.0, window_hop_seconds=0.5, min_speech_seconds=0.5)
    assert (s.window_samples, s.window_hop_samples, s.min_speech_samples) == (48000, 8000, 8000)


def test_original_recipe_differs_where_documented():
    assert ORIGINAL_SETTINGS.noise_reduction and not ORIGINAL_SETTINGS.vad
    assert ORIGINAL_SETTINGS.feature_norm == "none" and ORIGINAL_SETTINGS.window_hop_seconds == 3.0
    assert not DEFAULT_SETTINGS.noise_reduction and DEFAULT_SETTINGS.vad


def test_unknown_key_is_refused_with_its_name():
    data = DEFAULT_SETTINGS.to_dict() | {"spectral_tilt": 0.5}
    with pytest.raises(ModelError, match="spectral_tilt"):
        FeatureSettings.from_dict(data)


def test_newer_schema_is_refused():
    data = DEFAULT_SETTINGS.to_dict() | {"schema": SCHEMA_VERSION + 1}
    with pytest.raises(ModelError, match="schema"):
        FeatureSettings.from_dict(data)


def test_missing_keys_take_defaults():
    assert FeatureSettings.from_dict({"n_mfcc": 20}) == FeatureSettings(n_mfcc=20)


@pytest.mark.parametrize("change", [
    {"sample_rate": 0}, {"n_mfcc": 0}, {"n_mfcc": 200}, {"n_fft": 0}, {"hop_length": -1},
    {"feature_norm": "zscore"}, {"min_speech_seconds": 0.0}, {"min_speech_seconds": 4.0},
    {"window_hop_seconds": 0.0}, {"pre_emphasis": 1.0}, {"pre_emphasis": -0.1},
])
def test_invalid_values(change):
    with pytest.raises(ValueError):
        FeatureSettings(**change)
    with pytest.raises(ModelError, match="invalid"):
        FeatureSettings.from_dict(DEFAULT_SETTINGS.to_dict() | change)


def test_wrong_types_are_refused_as_model_errors():
    with pytest.raises(ModelError):
        FeatureSettings.from_dict({"window_seconds": "three"})


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"a string"'])
def test_malformed_json(text):
    with pytest.raises(ModelError):
        FeatureSettings.from_json(text)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_SETTINGS.n_mfcc = 20  # type: ignore[misc]
    assert DEFAULT_SETTINGS.with_changes(n_mfcc=20).n_mfcc == 20
    assert DEFAULT_SETTINGS.n_mfcc == 13
