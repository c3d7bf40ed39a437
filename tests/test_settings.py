"""FeatureSettings: the contract between training and the runtime must round-trip and refuse guesses.

Reading settings back is strict: every key required, no unknown key, the schema this runtime reads.
The values of the front end itself are named only where they are the contract (the model input's
width, the window on the frame grid, the original recipe we compare against).
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
    assert (s.window_samples, s.min_speech_samples) == (3 * rate, rate // 2)


def test_windows_on_the_frame_grid():
    s = DEFAULT_SETTINGS.with_changes(window_seconds=3.0, window_hop_seconds=0.5, min_speech_seconds=0.5)
    per_second = s.sample_rate / s.hop_length  # 50 frames a second at hop 320
    assert (s.window_frames, s.window_hop_frames, s.min_speech_frames) == (150, 25, 25)
    assert s.frame_seconds == pytest.approx(1 / per_second)
    assert s.frames_in(1.0) == 50 and s.frames_in(0.011) == 1 and s.frames_in(0.0) == 1  # at least one
    assert ORIGINAL_SETTINGS.window_frames == round(3.0 * 16000 / 512) == 94


def test_model_input_width():
    assert DEFAULT_SETTINGS.n_features == DEFAULT_SETTINGS.n_mfcc + 2  # log F0 and voicing columns
    assert DEFAULT_SETTINGS.with_changes(pitch=False).n_features == DEFAULT_SETTINGS.n_mfcc
    assert ORIGINAL_SETTINGS.n_features == 13


def test_original_recipe_is_the_university_one():
    s = ORIGINAL_SETTINGS
    assert (s.frame_length, s.hop_length, s.n_mels, s.n_mfcc) == (2048, 512, 128, 13)
    assert (s.fmin, s.fmax, s.pitch, s.feature_norm) == (0.0, 8000.0, False, "none")
    assert s.noise_reduction and not s.vad


def test_missing_key_is_refused_with_its_name():
    data = DEFAULT_SETTINGS.to_dict()
    del data["hop_length"]
    with pytest.raises(ModelError, match=r"lack hop_length; re-export it with 'gvd export'"):
        FeatureSettings.from_dict(data)


def test_older_schema_is_refused_with_what_to_do():
    data = DEFAULT_SETTINGS.to_dict() | {"schema": 1}
    with pytest.raises(ModelError, match=rf"schema 1, this runtime reads schema {SCHEMA_VERSION}: re-export the model"):
        FeatureSettings.from_dict(data)


def test_schema_2_models_read_with_the_settings_added_since_at_their_old_value():
    # The shipped models were exported with schema 2, before formants existed.
    data = DEFAULT_SETTINGS.to_dict() | {"schema": 2}
    del data["formants"]
    assert FeatureSettings.from_dict(data) == DEFAULT_SETTINGS


def test_an_older_schema_with_a_setting_it_could_not_have_is_refused():
    data = DEFAULT_SETTINGS.to_dict() | {"schema": 2}
    with pytest.raises(ModelError, match=r"schema 2 but have 'formants', which schema 3 added"):
        FeatureSettings.from_dict(data)


def test_missing_schema_is_refused():
    data = DEFAULT_SETTINGS.to_dict()
    del data["schema"]
    with pytest.raises(ModelError, match="no schema version"):
        FeatureSettings.from_dict(data)


def test_original_recipe_uses_non_overlapping_windows():
    assert ORIGINAL_SETTINGS.window_hop_seconds == ORIGINAL_SETTINGS.window_seconds
    assert ORIGINAL_SETTINGS != DEFAULT_SETTINGS


def test_unknown_key_is_refused_with_its_name():
    data = DEFAULT_SETTINGS.to_dict() | {"spectral_tilt": 0.5}
    with pytest.raises(ModelError, match=r"does not know \(spectral_tilt\); upgrade gvd"):
        FeatureSettings.from_dict(data)


def test_newer_schema_is_refused():
    data = DEFAULT_SETTINGS.to_dict() | {"schema": SCHEMA_VERSION + 1}
    with pytest.raises(ModelError, match=f"schema {SCHEMA_VERSION + 1}.*upgrade gvd"):
        FeatureSettings.from_dict(data)


@pytest.mark.parametrize("change", [
    {"sample_rate": 0}, {"min_speech_seconds": 0.0}, {"min_speech_seconds": DEFAULT_SETTINGS.window_seconds + 1},
    {"window_hop_seconds": 0.0}, {"n_mfcc": 65}, {"hop_length": 600}, {"fmax": 9000.0}, {"feature_norm": "z"},
    {"pre_emphasis": 1.0}, {"window_seconds": 0.01, "min_speech_seconds": 0.005},
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
