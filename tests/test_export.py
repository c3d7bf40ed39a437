"""Export: native ONNX recurrent operators, metadata, parity, int8, manifest.

The fast tests check the ONNX builder against a NumPy implementation of the Keras cells (no
TensorFlow needed); the slow ones train tiny Keras models and run the real export end to end.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="export needs the [train] extra")
ort = pytest.importorskip("onnxruntime")

from edge.metadata import ModelMetadata  # noqa: E402
from edge.settings import DEFAULT_SETTINGS  # noqa: E402
from export.errors import ExportError, ParityError  # noqa: E402
from export.manifest import ManifestEntry, choose_default, loco_accuracy, sha256_file, verify_manifest, write_manifest  # noqa: E402
from export.native import all_op_types, build_native  # noqa: E402
from export.parity import WindowSet, compare, load_windows, require_parity  # noqa: E402
from export.spec import CellWeights, DenseSpec, NetworkSpec, RecurrentSpec  # noqa: E402

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


# ---------------------------------------------------------------- NumPy reference of the Keras cells
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _run_cell(cell: str, w: CellWeights, x: np.ndarray, units: int) -> np.ndarray:
    """Keras semantics, x: (batch, time, features) -> all hidden states (batch, time, units)."""
    batch, steps, _ = x.shape
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    out = []
    for t in range(steps):
        xt = x[:, t]
        if cell == "lstm":
            z = xt @ w.kernel + h @ w.recurrent + w.bias
            i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        elif cell == "gru":
            xz = xt @ w.kernel + w.bias[0]
            hz = h @ w.recurrent + w.bias[1]
            z = _sigmoid(xz[:, :units] + hz[:, :units])
            r = _sigmoid(xz[:, units:2 * units] + hz[:, units:2 * units])
            candidate = np.tanh(xz[:, 2 * units:] + r * hz[:, 2 * units:])
            h = z * h + (1 - z) * candidate
        else:
            h = np.tanh(xt @ w.kernel + h @ w.recurrent + w.bias)
        out.append(h)
    return np.stack(out, axis=1)


def reference(spec: NetworkSpec, x: np.ndarray) -> np.ndarray:
    for layer in spec.recurrent:
        forward = _run_cell(layer.cell, layer.directions[0], x, layer.units)
        outputs = [forward]
        if layer.bidirectional:  # Keras runs the backward layer on reversed time, then flips it back
            outputs.append(_run_cell(layer.cell, layer.directions[1], x[:, ::-1], layer.units)[:, ::-1])
        if layer.return_sequences:
            x = np.concatenate(outputs, axis=-1)
        else:
            x = np.concatenate([forward[:, -1]] + ([outputs[1][:, 0]] if layer.bidirectional else []), axis=-1)
    if spec.pooling == "mean":
        x = x.mean(axis=1)
    elif spec.pooling == "meanmax":
        x = np.concatenate([x.mean(axis=1), x.max(axis=1)], axis=-1)
    for dense in spec.dense:
        x = x @ dense.kernel + dense.bias
        x = np.maximum(x, 0) if dense.activation == "relu" else _sigmoid(x)
    return x


def random_spec(cell: str, rng, units=6, layers=1, bidirectional=False, pooling="last", dense_units=0,
                n_inputs=13) -> NetworkSpec:
    g, recurrent, size = GATES[cell], [], n_inputs
    for index in range(layers):
        directions = tuple(
            CellWeights(kernel=rng.normal(0, 0.5, (size, g * units)).astype(np.float32),
                        recurrent=rng.normal(0, 0.5, (units, g * units)).astype(np.float32),
                        bias=rng.normal(0, 0.3, (2, 3 * units) if cell == "gru" else (g * units,)).astype(np.float32))
            for _ in range(2 if bidirectional else 1))
        sequences = index < layers - 1 or pooling != "last"
        recurrent.append(RecurrentSpec(cell, units, directions, sequences))
        size = units * len(directions)
    size *= 2 if pooling == "meanmax" else 1
    dense = []
    if dense_units:
        dense.append(DenseSpec(rng.normal(0, 0.5, (size, dense_units)).astype(np.float32),
                               rng.normal(0, 0.1, dense_units).astype(np.float32), "relu"))
        size = dense_units
    dense.append(DenseSpec(rng.normal(0, 0.5, (size, 1)).astype(np.float32),
                           rng.normal(0, 0.1, 1).astype(np.float32), "sigmoid"))
    return NetworkSpec(n_inputs=n_inputs, recurrent=tuple(recurrent), pooling=pooling, dense=tuple(dense))


def _run(proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": x.astype(np.float32)})[0]


VARIANTS = [
    dict(),
    dict(bidirectional=True),
    dict(pooling="mean"),
    dict(pooling="meanmax", layers=2, dense_units=5),
    dict(bidirectional=True, layers=2, pooling="mean"),
    dict(bidirectional=True, pooling="meanmax"),
]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) or "plain")
def test_native_graph_matches_numpy_reference(cell, variant, rng):
    spec = random_spec(cell, rng, **variant)
    proto = build_native(spec)
    ops = all_op_types(proto)
    assert {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell] in ops
    assert "Loop" not in ops and "Scan" not in ops
    for shape in [(3, 94, 13), (1, 17, 13)]:  # batch and time are dynamic
        x = rng.standard_normal(shape)
        got = _run(proto, x)
        assert got.shape == (shape[0], 1)
        np.testing.assert_allclose(got, reference(spec, x), atol=2e-6)


@pytest.mark.parametrize("opset", [15, 17, 18, 21])
def test_native_graph_for_several_opsets(opset, rng):
    spec = random_spec("gru", rng, pooling="meanmax", bidirectional=True)  # ReduceMean/Max changed in 18
    from export.native import NativeOptions

    proto = build_native(spec, NativeOptions(opset=opset))
    assert proto.opset_import[0].version == opset
    x = rng.standard_normal((2, 30, 13))
    np.testing.assert_allclose(_run(proto, x), reference(spec, x), atol=2e-6)


def test_native_graph_io_names_and_dynamic_axes(rng):
    proto = build_native(random_spec("gru", rng))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "features" and out.name == "p_female"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", "time", 13]
    assert proto.opset_import[0].version >= 15


def test_spec_validation_rejects_wrong_shapes(rng):
    spec = random_spec("lstm", rng)
    layer = spec.recurrent[0]
    broken = CellWeights(layer.directions[0].kernel[:, :-1], layer.directions[0].recurrent, layer.directions[0].bias)
    bad = NetworkSpec(13, (RecurrentSpec("lstm", layer.units, (broken,), False),), "last", spec.dense)
    with pytest.raises(ValueError, match="kernel"):
        bad.validate()


# ---------------------------------------------------------------- parity, windows, manifest
def test_parity_fails_loudly_on_a_flipped_clip():
    windows = WindowSet(windows=[np.zeros((5, 13), np.float32)] * 4, clips=[0, 0, 1, 1])
    keras = np.array([0.2, 0.3, 0.7, 0.8])
    close = keras + 5e-6
    assert compare(keras, close, windows, 0.5).passed
    flipped = np.array([0.2, 0.3, 0.2, 0.25])  # clip 1 changes side
    report = compare(keras, flipped, windows, 0.5)
    assert report.clip_decision_mismatches == 1 and not report.passed
    with pytest.raises(ParityError, match="1 clip decisions differ"):
        require_parity(report, "test")


def test_load_windows_reads_labels_and_clips(tmp_path, rng):
    arrays = {f"features_{i}": rng.standard_normal((10 + i, 13)).astype(np.float32) for i in range(3)}
    arrays.update({f"label_{i}": np.array(i % 2) for i in range(3)})
    np.savez(tmp_path / "w.npz", **arrays, clips=np.array([7, 7, 9]))
    windows = load_windows(tmp_path / "w.npz", n_mfcc=13)
    assert len(windows) == 3 and windows.windows[2].shape == (12, 13)
    assert windows.labels.tolist() == [0, 1, 0]
    assert windows.clip_groups() == {7: [0, 1], 9: [2]}
    np.savez(tmp_path / "bad.npz", features_0=np.zeros((4, 20), np.float32))
    with pytest.raises(ExportError, match="shape"):
        load_windows(tmp_path / "bad.npz", n_mfcc=13)


def test_loco_accuracy_and_default_choice():
    assert loco_accuracy({"loco": {"ravdess": {"accuracy": 0.8}, "urdu": {"accuracy": 0.6}}}) == pytest.approx(0.7)
    assert loco_accuracy({"clip": {"loco_accuracy": 0.9}}) == 0.9
    assert loco_accuracy({"test": {"accuracy": 0.9}}) is None

    def entry(name, loco, ms, quantized=False):
        return ManifestEntry(name, f"{name}.onnx", "0" * 64, 1, name.split("_")[0], quantized,
                             {"loco_accuracy": loco, "window_ms_median": ms})

    entries = [entry("lstm", 0.81, 0.2), entry("gru", 0.85, 0.3), entry("rnn", 0.85, 0.1),
               entry("lstm_int8", 0.99, 0.01, quantized=True)]
    assert choose_default(entries) == "rnn"  # best accuracy, then speed; int8 never the default
    entries[1] = entry("gru", 0.86, 0.3)
    assert choose_default(entries) == "gru"


def test_manifest_detects_tampering(tmp_path):
    (tmp_path / "gru.onnx").write_bytes(b"model bytes")
    entry = ManifestEntry("gru", "gru.onnx", sha256_file(tmp_path / "gru.onnx"), 11, "gru", False)
    write_manifest(tmp_path, [entry], "gru")
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["format_version"] == 1 and data["default"] == "gru" and data["models"][0]["size_bytes"] == 11
    assert verify_manifest(tmp_path) == []
    (tmp_path / "gru.onnx").write_bytes(b"model bytez")
    assert verify_manifest(tmp_path) == ["gru.onnx: sha256 mismatch"]


# ---------------------------------------------------------------- end to end with Keras (slow)
# Trained models take the default settings' input: their width and a full window's frames.
N_FEATURES, WINDOW = DEFAULT_SETTINGS.n_features, DEFAULT_SETTINGS.window_frames


def make_training_dir(root: Path, cell: str, seed: int = 0, **config) -> Path:
    """A tiny trained model in the training output contract layout (COMMON.md contract 1)."""
    keras = pytest.importorskip("keras")
    from train.models import ModelConfig, build_model

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model_config = ModelConfig(cell=cell, units=config.pop("units", 8), n_features=N_FEATURES, **config)
    model = build_model(model_config)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = rng.standard_normal((32, WINDOW, N_FEATURES)).astype(np.float32)
    y = (x[:, :, 0].mean(axis=1) > 0).astype(np.float32)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    directory = root / cell
    directory.mkdir(parents=True)
    model.save(directory / "model.keras")
    windows = [rng.standard_normal((n, N_FEATURES)).astype(np.float32) for n in [WINDOW] * 12 + [40, 61, WINDOW, 20]]
    labels = rng.integers(0, 2, len(windows))
    np.savez(directory / "parity_windows.npz", **{f"features_{i}": w for i, w in enumerate(windows)},
             labels=labels, clips=np.arange(len(windows)) // 2)
    record = {"cell": cell, "model_config": model_config.to_dict(), "feature_settings": DEFAULT_SETTINGS.to_dict(),
              "threshold": 0.5, "metrics": {"loco": {"ravdess": {"accuracy": 0.5 + 0.01 * seed}}},
              "data_manifest_sha256": "ab" * 32, "license": "CC BY-NC-SA 4.0 (test)",
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model_version": f"test-{cell}-{seed}", "preset": "tiny"}
    (directory / "training.json").write_text(json.dumps(record))
    return directory


SLOW_VARIANTS = [
    ("lstm", {}),
    ("gru", {}),
    ("rnn", {}),
    ("gru", {"bidirectional": True, "pooling": "mean"}),
    ("lstm", {"pooling": "meanmax", "layers": 2, "dense_units": 4}),
    ("rnn", {"bidirectional": True, "layers": 2}),
]


@pytest.mark.slow
@pytest.mark.parametrize("cell,config", SLOW_VARIANTS, ids=lambda v: str(v))
def test_export_trained_model_end_to_end(tmp_path, cell, config):
    from export.build import ExportOptions, export_model

    source = make_training_dir(tmp_path / "train", cell, **dict(config))
    out = tmp_path / f"{cell}.onnx"
    results = export_model(source, out, ExportOptions(timing_runs=5, int8=False))
    assert [r.path for r in results] == [out]
    proto = onnx.load(out)
    ops = all_op_types(proto)
    assert {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell] in ops
    assert "Loop" not in ops and "Scan" not in ops
    assert results[0].parity["max_abs_diff"] <= 1e-5 and results[0].parity["clip_decision_mismatches"] == 0

    # Metadata round trip, read the way the runtime reads it.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    record = json.loads((source / "training.json").read_text())
    assert metadata.cell == cell and metadata.model_version == record["model_version"]
    assert metadata.feature_settings == DEFAULT_SETTINGS and metadata.threshold == 0.5
    assert metadata.data_manifest_sha256 == record["data_manifest_sha256"]
    assert metadata.metrics["loco"] == record["metrics"]["loco"]
    assert metadata.metrics["export"]["parity_max_abs_diff"] <= 1e-5

    # Independent parity check on the saved file, against Keras on fresh windows.
    import keras

    model = keras.saving.load_model(source / "model.keras", compile=False)
    x = np.random.default_rng(7).standard_normal((4, WINDOW, N_FEATURES)).astype(np.float32)
    onnx_out = session.run(None, {"features": x})[0]
    assert onnx_out.shape == (4, 1)
    np.testing.assert_allclose(onnx_out, np.asarray(model(x, training=False)), atol=1e-5)


@pytest.mark.slow
def test_export_release_directory_and_cli(tmp_path):
    from click.testing import CliRunner

    from export.cli import export

    train_dir = tmp_path / "train"
    for seed, cell in enumerate(["lstm", "gru", "rnn"]):
        make_training_dir(train_dir, cell, seed=seed)
    out = tmp_path / "models"
    result = CliRunner().invoke(export, ["--train-dir", str(train_dir), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert verify_manifest(out) == []
    names = {m["name"] for m in manifest["models"]}
    assert {"lstm", "gru", "rnn"} <= names and names <= {"lstm", "gru", "rnn", "lstm_int8"}
    assert manifest["default"] == "rnn"  # highest LOCO accuracy in the fake records (seed 2)
    assert all(m["size_bytes"] <= 300_000 for m in manifest["models"])
    lstm = next(m for m in summary["models"] if m["name"] == "lstm")
    int8 = lstm["accuracy"]["int8"]  # the int8 attempt is always reported, shipped or not
    assert ("lstm_int8" in names) == int8["shipped"]
    assert int8["shipped"] == (int8["accuracy_drop_points"] <= 0.5
                               and int8["clip_decision_flips"] <= 0.02 * int8["clips"])
    card = (out / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in card and "non-commercial" in card.lower()

    # A single model with the tf2onnx method keeps the documented I/O names.
    single = tmp_path / "gru_tf2onnx.onnx"
    result = CliRunner().invoke(export, [str(train_dir / "gru"), "--out", str(single), "--method", "tf2onnx"])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(single), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["p_female"]


def test_cli_refuses_ambiguous_sources(tmp_path):
    from click.testing import CliRunner

    from export.cli import export

    result = CliRunner().invoke(export, ["--out", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0 and "either SOURCE" in result.output
    result = CliRunner().invoke(export, [str(tmp_path), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0 and "no Keras model" in result.output


@pytest.mark.slow
def test_int8_lstm_is_written_when_allowed_and_reported(tmp_path):
    from export.build import ExportOptions, export_model

    source = make_training_dir(tmp_path / "train", "lstm", units=16)
    out = tmp_path / "lstm.onnx"
    # A drop limit no model can exceed: this exercises the shipping path, not the accuracy rule.
    results = export_model(source, out, ExportOptions(timing_runs=5, max_int8_drop_points=100.0,
                                                      max_int8_flip_share=1.0))
    assert [r.path.name for r in results] == ["lstm.onnx", "lstm_int8.onnx"]
    int8 = results[1]
    assert int8.quantized and "DynamicQuantizeLSTM" in all_op_types(onnx.load(int8.path))
    assert int8.size_bytes < results[0].size_bytes
    session = ort.InferenceSession(str(int8.path), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    assert metadata.cell == "lstm" and metadata.metrics["export"]["quantized"] is True
    evaluation = results[0].accuracy["int8"]
    assert evaluation["shipped"] and evaluation["labelled_clips"] == 8
    assert evaluation["accuracy_drop_points"] == pytest.approx(
        100 * (evaluation["clip_accuracy_float"] - evaluation["clip_accuracy_int8"]))


@pytest.mark.slow
def test_reader_refuses_layers_it_cannot_reproduce():
    keras = pytest.importorskip("keras")
    from export.keras_reader import read_network

    inputs = keras.Input(shape=(None, 13), name="features")
    x = keras.layers.GRU(4, activation="relu", name="rnn_0")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="p_female")(x))
    with pytest.raises(ExportError, match="activation='relu'"):
        read_network(model)

    x = keras.layers.Conv1D(4, 3, name="conv")(inputs)
    x = keras.layers.LSTM(4, name="rnn_0")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="p_female")(x))
    with pytest.raises(ExportError, match="Conv1D"):
        read_network(model)


def test_window_sets_keep_clips_of_different_files_apart():
    a = WindowSet([np.zeros((3, 13), np.float32)] * 2, labels=np.array([1, 1]), clips=[0, 0], source="x.npz")
    b = WindowSet([np.zeros((3, 13), np.float32)] * 2, clips=[0, 1], source="x.npz")
    both = WindowSet.concat([a, b])
    assert len(both) == 4 and len(both.clip_groups()) == 3
    assert both.labels.tolist() == [1, 1, -1, -1]  # -1: unlabelled, ignored by accuracy
