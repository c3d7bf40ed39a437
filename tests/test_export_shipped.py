"""The shipped models/: every file matches manifest.json, loads, is native and self-describing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.manifest import MANIFEST_FORMAT, MANIFEST_NAME, ManifestEntry, read_manifest, verify_manifest
from edge.metadata import CELLS, INPUT_NAME, ModelMetadata

MODELS = Path(__file__).resolve().parent.parent / "models"
MANIFEST = MODELS / MANIFEST_NAME
NATIVE = {"lstm": {"LSTM", "DynamicQuantizeLSTM"}, "gru": {"GRU"}, "rnn": {"RNN"}}

needs_manifest = pytest.mark.skipif(not MANIFEST.is_file(), reason="models/ has no manifest.json yet "
                                    "(build it with: gvd export --train-dir DIR --out models)")


def _entries() -> list[ManifestEntry]:
    return list(read_manifest(MANIFEST).models) if MANIFEST.is_file() else []


@needs_manifest
def test_manifest_hashes_and_sizes_match_the_files():
    assert verify_manifest(MODELS) == []
    manifest = read_manifest(MANIFEST)
    assert manifest.format_version == MANIFEST_FORMAT
    assert set(manifest.names) >= set(CELLS)


@needs_manifest
@pytest.mark.parametrize("entry", _entries(), ids=lambda e: e.name)
def test_shipped_model_is_native_small_and_self_describing(entry):
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    from export.build import MAX_BYTES
    from export.native import all_op_types

    path = MODELS / entry.file
    assert path.stat().st_size <= MAX_BYTES
    ops = set(all_op_types(onnx.load(path)))
    assert NATIVE[entry.cell] & ops, f"no native recurrent operator in {path.name}: {sorted(ops)}"
    assert not {"Loop", "Scan"} & ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == list(metadata.outputs)
    assert metadata.cell == entry.cell
    assert metadata.license and metadata.data_manifest_sha256


def test_export_cli_module_imports_stay_light():
    code = ("import sys, export.cli; heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx', 'numpy') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
