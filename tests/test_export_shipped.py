"""The shipped models/: every file matches manifest.json, loads, is native and self-describing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.metadata import ModelMetadata

MODELS = Path(__file__).resolve().parent.parent / "models"
MANIFEST = MODELS / "manifest.json"
NATIVE = {"lstm": {"LSTM", "DynamicQuantizeLSTM"}, "gru": {"GRU"}, "rnn": {"RNN"}}

needs_manifest = pytest.mark.skipif(not MANIFEST.is_file(), reason="models/ has no manifest.json yet "
                                    "(build it with: gvd export --train-dir DIR --out models)")


def _entries() -> list[dict]:
    return json.loads(MANIFEST.read_text())["models"] if MANIFEST.is_file() else []


@needs_manifest
def test_manifest_hashes_and_sizes_match_the_files():
    from export.manifest import verify_manifest

    assert verify_manifest(MODELS) == []
    data = json.loads(MANIFEST.read_text())
    assert data["format_version"] == 1
    assert {e["name"] for e in data["models"]} >= {"lstm", "gru", "rnn"}


@needs_manifest
@pytest.mark.parametrize("entry", _entries(), ids=lambda e: e["name"])
def test_shipped_model_is_native_small_and_self_describing(entry):
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    from export.native import all_op_types

    path = MODELS / entry["file"]
    assert path.stat().st_size <= 300_000
    ops = set(all_op_types(onnx.load(path)))
    assert NATIVE[entry["cell"]] & ops, f"no native recurrent operator in {path.name}: {sorted(ops)}"
    assert not {"Loop", "Scan"} & ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["p_female"]
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    assert metadata.cell == entry["cell"]
    assert metadata.license and metadata.data_manifest_sha256


def test_export_cli_module_imports_stay_light():
    code = ("import sys, export.cli; heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
