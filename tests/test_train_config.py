"""Presets and config files: the original recipe is exact, overrides are checked."""

from __future__ import annotations

import json

import pytest

from edge.settings import ORIGINAL_SETTINGS
from train.config import apply_overrides, preset, read_config_file
from train.models import ORIGINAL_CONFIG, build_model, weight_bytes


def test_original_preset_is_the_university_recipe():
    config = preset("original")
    assert config.features == ORIGINAL_SETTINGS
    for cell in ("lstm", "gru", "rnn"):
        assert config.model_config(cell) == ORIGINAL_CONFIG[cell]
    assert (config.learning_rate, config.batch_size, config.epochs, config.patience) == (1e-3, 32, 50, 10)
    assert config.augment.variants == 0 and not config.balance and config.label_smoothing == 0


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_default_models_fit_the_size_budget(cell):
    model = build_model(preset("default").model_config(cell))
    assert weight_bytes(model) <= 300 * 1024


def test_toml_and_json_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 3\nsplit = [0.7, 0.15, 0.15]\n[features]\nfeature_norm = "cmvn"\n'
                    '[models.gru]\nunits = 32\n[augment]\nvariants = 1\n')
    config = apply_overrides(preset("default"), read_config_file(toml))
    assert config.epochs == 3 and config.split == (0.7, 0.15, 0.15)
    assert config.features.feature_norm == "cmvn" and config.augment.variants == 1
    assert config.model_config("gru").units == 32 and config.model_config("lstm").units == 64
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"learning_rate": 0.01}))
    assert apply_overrides(config, read_config_file(js)).learning_rate == 0.01


def test_unknown_keys_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown training option"):
        apply_overrides(preset("default"), {"epoch": 3})
    with pytest.raises(ValueError, match="must be .json or .toml"):
        read_config_file(tmp_path / "c.yaml")


def test_params_are_flat_and_complete():
    params = preset("default").params()
    assert params["features.feature_norm"] == "cmn" and params["models.gru.units"] == 64
    assert all("." in k or not isinstance(v, dict) for k, v in params.items())
