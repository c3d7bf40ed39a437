"""A model that breaks the I/O contract is refused when it loads, with one sentence naming the file."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge import Detector, ModelError
from edge import model as edge_model
from edge.metadata import OUTPUT_NAME, SPEECH_OUTPUT_NAME

from model_fixtures import make_contract_model, make_models_dir, test_metadata

onnx = pytest.importorskip("onnx")
N = test_metadata().feature_settings.n_features


@pytest.fixture(autouse=True)
def fresh_sessions():
    edge_model.clear_cache()
    yield
    edge_model.clear_cache()


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelError) as caught:
        edge_model.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert re.search(fragment, message), (fragment, message)
    return message


def test_a_contract_graph_loads_and_runs(tmp_path):
    loaded = edge_model.load(make_contract_model(tmp_path / "ok.onnx"))
    assert (loaded.input_name, loaded.output_name, loaded.speech_output_name) == ("features", OUTPUT_NAME, None)
    out = loaded.session.run(None, {"features": np.zeros((2, 37, N), np.float32)})
    assert [o.shape for o in out] == [(2, 1)]


def test_fixed_time_dimension_is_refused(tmp_path):
    path = make_contract_model(tmp_path / "fixed.onnx", input_shape=["batch", 50, N])
    refused(path, rf"fixed batch or time dimension \['batch', 50, {N}\]", "time dynamic")


def test_fixed_batch_and_time_is_refused(tmp_path):
    refused(make_contract_model(tmp_path / "fixed.onnx", input_shape=[1, 50, N]), r"fixed batch or time")


def test_float64_input_is_refused(tmp_path):
    path = make_contract_model(tmp_path / "double.onnx", input_type=onnx.TensorProto.DOUBLE,
                               outputs={OUTPUT_NAME: ["batch", 1]})
    message = refused(path, r"tensor\(double\)", "float32")
    assert "\n" not in message


def test_feature_width_must_match_the_settings(tmp_path):
    path = make_contract_model(tmp_path / "wide.onnx", n_features=N + 7)
    refused(path, f"{N + 7} features per frame", f"give {N}")


def test_rank_two_input_is_refused(tmp_path):
    refused(make_contract_model(tmp_path / "flat.onnx", input_shape=["batch", N]), rf"shape \['batch', {N}\]")


def test_two_column_output_is_refused(tmp_path):
    path = make_contract_model(tmp_path / "two.onnx", outputs={OUTPUT_NAME: ["batch", 2]})
    refused(path, r"output 'p_female' is tensor\(float\) \['batch', 2\]", r"\[batch, 1\]")


def test_other_output_names_are_refused(tmp_path):
    path = make_contract_model(tmp_path / "probs.onnx", outputs={"probabilities": ["batch", 1]})
    refused(path, r"outputs are \['probabilities'\]", r"promises \['p_female'\]")


def test_speech_output_loads_when_the_metadata_says_so(tmp_path):
    metadata = replace(test_metadata(), outputs=(OUTPUT_NAME, SPEECH_OUTPUT_NAME))
    path = make_contract_model(tmp_path / "speech.onnx", metadata,
                               outputs={OUTPUT_NAME: ["batch", 1], SPEECH_OUTPUT_NAME: ["batch", 1]})
    loaded = edge_model.load(path)
    assert loaded.speech_output_name == SPEECH_OUTPUT_NAME and loaded.metadata.has_speech_output


def test_speech_output_the_metadata_does_not_declare_is_refused(tmp_path):
    path = make_contract_model(tmp_path / "undeclared.onnx",
                               outputs={OUTPUT_NAME: ["batch", 1], SPEECH_OUTPUT_NAME: ["batch", 1]})
    refused(path, r"outputs are \['p_female', 'p_speech'\]", r"promises \['p_female'\]")


def test_declared_speech_output_missing_from_the_graph_is_refused(tmp_path):
    metadata = replace(test_metadata(), outputs=(OUTPUT_NAME, SPEECH_OUTPUT_NAME))
    refused(make_contract_model(tmp_path / "missing.onnx", metadata), r"promises \['p_female', 'p_speech'\]")


def test_malformed_speech_output_is_refused(tmp_path):
    metadata = replace(test_metadata(), outputs=(OUTPUT_NAME, SPEECH_OUTPUT_NAME))
    path = make_contract_model(tmp_path / "bad_speech.onnx", metadata,
                               outputs={OUTPUT_NAME: ["batch", 1], SPEECH_OUTPUT_NAME: ["batch", 3]})
    refused(path, r"output 'p_speech'")


def test_metadata_errors_name_the_file(tmp_path):
    settings = test_metadata().feature_settings
    path = make_contract_model(tmp_path / "late.onnx", replace(test_metadata(settings), threshold=1.5))
    refused(path, "threshold 1.5 is outside")


def test_models_dir_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GVD_MODELS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match=r"GVD_MODELS_DIR=.*nowhere: no such folder"):
        Detector()
    with pytest.raises(ModelError, match="no such folder"):
        edge_model.list_models()


def test_models_dir_without_a_manifest_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("GVD_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelError, match=r"GVD_MODELS_DIR=.*empty: the folder has no manifest.json"):
        Detector("gru")


def test_a_model_file_path_ignores_the_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GVD_MODELS_DIR", str(tmp_path / "nowhere"))
    assert Detector(make_contract_model(tmp_path / "ok.onnx")).name == "ok"


def test_a_folder_given_as_model_says_so(tmp_path):
    with pytest.raises(ModelError, match="is a folder, not a model file"):
        Detector(tmp_path)


def test_manifest_mismatch_names_the_manifest_it_used(tmp_path, monkeypatch):
    folder = make_models_dir(tmp_path / "elsewhere")
    monkeypatch.setenv("GVD_MODELS_DIR", str(folder))
    make_contract_model(folder / "lstm.onnx")  # swapped behind the manifest's back
    with pytest.raises(ModelError) as caught:
        Detector("lstm")
    assert f"does not match {folder / 'manifest.json'}" in str(caught.value)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("default"), "default model None is not among"),
    (lambda m: m["models"][0].pop("sha256"), "'gru' lacks sha256"),
    (lambda m: m["models"][0].update(size_bytes="12"), "wrong type for size_bytes"),
    (lambda m: m["models"][0].update(colour="red"), "unknown keys colour"),
    (lambda m: m.update(format_version=99), "manifest format 99 is newer"),
    (lambda m: m["models"].append(dict(m["models"][0])), "listed twice"),
])
def test_malformed_manifest_is_refused_naming_the_file(tmp_path, monkeypatch, change, message):
    folder = make_models_dir(tmp_path / "models")
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data))
    monkeypatch.setenv("GVD_MODELS_DIR", str(folder))
    with pytest.raises(ModelError) as caught:
        Detector()
    assert str(caught.value).startswith(f"{manifest}: ") and message in str(caught.value)
