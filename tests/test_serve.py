"""``gvd serve``: the HTTP API, its upload limits and error codes, the feedback loop, and the web page.

The model is a tiny ONNX graph built here (mean over time -> linear -> sigmoid) carrying real gvd
metadata, and the audio is a synthetic voice (harmonics under formant peaks), so the tests need
neither the shipped models nor the shared recordings.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
onnx = pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import edge  # noqa: E402
from edge import model as model_module  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.serve.app import ServeOptions, create_app, serve  # noqa: E402
from edge.serve.errors import machine_word  # noqa: E402

from serve_fixtures import (  # noqa: E402
    SR,
    feedback,
    free_port,
    make_client,
    raw_request,
    services,
    stored_rows,
    synthetic_voice,
    tilt_model,
    upload,
)

REPO = Path(__file__).resolve().parent.parent

# --- read-only endpoints ---------------------------------------------------------------------------

def test_health(client: TestClient):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["model"] == "tiny" and body["model_version"] == "test-1"
    assert body["version"] == edge.__version__
    assert body["uptime_seconds"] >= 0
    assert body["max_upload_mb"] == 20.0


def test_models_lists_shipped_models_and_marks_loaded(tiny_model: Path, tmp_path: Path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    data = tiny_model.read_bytes()
    (shipped / "tiny.onnx").write_bytes(data)
    (shipped / "other.onnx").write_bytes(data)
    entries = [{"name": name, "file": f"{name}.onnx", "sha256": hashlib.sha256(data).hexdigest(),
                "size_bytes": len(data), "cell": "gru", "quantized": False,
                "metrics": {"accuracy": 0.5 if name == "tiny" else 0.25}, "description": name}
               for name in ("tiny", "other")]
    (shipped / "manifest.json").write_text(json.dumps({"format_version": 1, "default": "tiny", "models": entries}))
    monkeypatch.setenv("GVD_MODELS_DIR", str(shipped))
    model_module.clear_cache()
    app = create_app(ServeOptions(model=None, feedback_dir=tmp_path / "fb"))  # None: the manifest default
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = client.get("/models").json()
    model_module.clear_cache()
    by_name = {m["name"]: m for m in body}
    assert set(by_name) == {"tiny", "other"}
    assert by_name["tiny"]["default"] is True and by_name["other"]["default"] is False
    assert by_name["tiny"]["loaded"] is True and by_name["other"]["loaded"] is False
    assert by_name["other"]["metrics"] == {"accuracy": 0.25} and by_name["other"]["cell"] == "gru"
    assert "path" not in by_name["tiny"]  # no server file-system paths in answers


# --- /predict -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["low", "high", "flac"])
def test_predict_matches_the_library(client: TestClient, tiny_model: Path, voices: dict[str, Path], name: str):
    response = upload(client, voices[name])
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Detector(tiny_model).predict(voices[name])
    assert body["label"] == expected.label and body["label"] in ("female", "male")
    assert body["p_female"] == pytest.approx(expected.p_female, abs=1e-6)
    assert body["duration"] == pytest.approx(expected.duration)
    assert len(body["segments"]) == len(expected.segments) >= 1
    assert body["model"] == "tiny"
    assert set(body["timings_ms"]) == set(expected.timings_ms) and "total" in body["timings_ms"]
    assert len(body["prediction_id"]) == 32
    assert "path" not in body


def test_the_two_synthetic_voices_get_different_probabilities(client: TestClient, voices: dict[str, Path]):
    low = upload(client, voices["low"]).json()["p_female"]
    high = upload(client, voices["high"]).json()["p_female"]
    assert low != pytest.approx(high, abs=1e-3)  # the model really sees the audio, not a constant


def test_upload_without_extension_is_recognised_by_content(client: TestClient, voices: dict[str, Path]):
    response = upload(client, voices["low"], name="blob")
    assert response.status_code == 200, response.text
    assert response.json()["label"] in ("female", "male")


def test_raw_audio_body(client: TestClient, voices: dict[str, Path]):
    response = client.post("/predict?filename=clip.wav", content=voices["high"].read_bytes(),
                           headers={"content-type": "audio/wav"})
    assert response.status_code == 200, response.text
    assert response.json()["label"] in ("female", "male")


def _recent_files(client: TestClient) -> list[Path]:
    return sorted(services(client).recent.directory.iterdir())


def test_too_large_upload_is_refused_with_413(tiny_model: Path, tmp_path: Path, voices: dict[str, Path]):
    # 0.05 MB limit; the 2.6 s, 16-bit clip is about 83 KB.
    with make_client(tiny_model, tmp_path / "fb", max_upload_mb=0.05) as client:
        response = upload(client, voices["low"])
        assert response.status_code == 413
        assert response.json()["error"] == "upload_too_large" and "limit" in response.json()["message"]

        # Without a Content-Length (chunked), the limit is enforced while the body streams in.
        def chunks():
            data = voices["low"].read_bytes()
            for i in range(0, len(data), 4096):
                yield data[i:i + 4096]

        response = client.post("/predict?filename=x.wav", content=chunks(), headers={"content-type": "audio/wav"})
        assert response.status_code == 413
        boundary = "gvdtestboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n"
                "Content-Type: audio/wav\r\n\r\n").encode()

        def multipart_chunks():
            yield head
            yield from chunks()
            yield f"\r\n--{boundary}--\r\n".encode()

        response = client.post("/predict", content=multipart_chunks(),
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 413
        assert _recent_files(client) == []  # partial uploads are deleted

        small = tmp_path / "small.wav"
        sf.write(small, synthetic_voice(220.0, seconds=1.0)[: int(1.2 * SR)], SR, subtype="PCM_16")
        assert small.stat().st_size < 0.05 * 1024 * 1024
        assert upload(client, small).status_code == 200  # under the limit: accepted


def _local_error(tiny_model: Path, path: Path) -> Exception:
    with pytest.raises(edge.GvdError) as info:
        Detector(tiny_model).predict(path)
    return info.value


@pytest.mark.parametrize("name,content", [
    ("notes.wav", b"this is a text file, not audio " * 20),
    ("empty.wav", b""),
    ("broken.flac", b"fLaC" + bytes(range(256)) * 4),
    ("random.mp3", bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8))),
])
def test_bad_audio_is_422_with_the_specific_error(client: TestClient, tiny_model: Path, tmp_path: Path,
                                                  name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    response = client.post("/predict", files={"file": (name, content, "application/octet-stream")})
    assert response.status_code == 422, response.text
    body = response.json()
    expected = _local_error(tiny_model, path)
    assert body["error"] == machine_word(expected)
    assert isinstance(expected, edge.AudioError)
    # The same message the library gives, about the user's file name (not the server's temporary copy).
    assert body["message"] == str(expected).replace(str(path), name)
    assert ".incoming" not in body["message"]
    assert _recent_files(client) == []


def test_too_short_audio_is_no_speech_with_a_reason(client: TestClient, tmp_path: Path):
    path = tmp_path / "short.wav"
    sf.write(path, synthetic_voice(220.0, seconds=0.1)[:1600], SR)
    response = upload(client, path)
    assert response.status_code == 200
    assert (response.json()["label"], response.json()["reason"]) == ("no_speech", "too_short")


def test_missing_codec_extra_is_415_naming_the_extra(client: TestClient, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV ([formats]) were not installed
    response = client.post("/predict", files={"file": ("voice.m4a", b"\x00\x00\x00\x18ftypM4A " + bytes(200),
                                                        "audio/mp4")})
    assert response.status_code == 415
    assert "[formats]" in response.json()["message"]


def test_request_without_file_is_400(client: TestClient):
    response = client.post("/predict", files={"something": (None, "else")})  # multipart, no file part
    assert (response.status_code, response.json()["error"]) == (400, "no_file")
    response = client.post("/predict", json={"file": "x.wav"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["message"]


def test_kept_uploads_are_bounded_and_removed_on_shutdown(tiny_model: Path, tmp_path: Path,
                                                         voices: dict[str, Path]):
    with make_client(tiny_model, tmp_path / "fb", recent_items=2) as client:
        ids = [upload(client, voices["high"]).json()["prediction_id"] for _ in range(3)]
        folder = services(client).recent.directory
        assert len(list(folder.iterdir())) == 2  # only the last two uploads are kept
        oldest = feedback(client, ids[0], "male")
        assert (oldest.status_code, oldest.json()["error"]) == (404, "unknown_prediction")
    assert not folder.exists()


# --- /feedback ------------------------------------------------------------------------------------

def test_feedback_by_prediction_id_stores_a_training_corpus(client: TestClient, voices: dict[str, Path],
                                                            tmp_path: Path):
    prediction = upload(client, voices["low"]).json()
    wrong = "male" if prediction["label"] == "female" else "female"
    response = feedback(client, prediction["prediction_id"], wrong)
    assert response.status_code == 200, response.text
    body = response.json()
    stored = tmp_path / "feedback" / wrong / f"{prediction['prediction_id']}.wav"
    assert body["stored"]["correction"] is True and "file" not in body["stored"]  # no server paths
    assert stored.read_bytes() == voices["low"].read_bytes()
    rows = stored_rows(client)
    assert len(rows) == 1
    row = rows[0]
    assert row.file == f"{wrong}/{stored.name}"
    assert row.prediction_id == prediction["prediction_id"]
    assert row.predicted_label == prediction["label"] and row.correct_label == wrong
    assert row.p_female == pytest.approx(prediction["p_female"], abs=1e-6)
    assert row.model == "tiny"
    assert body["feedback"]["corrections_pending"] == 1 and body["feedback"]["threshold"] == 20
    assert client.get("/feedback").json()["rows"] == 1

    again = feedback(client, prediction["prediction_id"], wrong)
    assert (again.status_code, again.json()["error"]) == (409, "already_recorded")
    assert len(stored_rows(client)) == 1
    assert _recent_files(client) == []  # the kept copy was moved into the store


def test_feedback_errors(client: TestClient, voices: dict[str, Path], tmp_path: Path):
    prediction = upload(client, voices["high"]).json()
    unknown = feedback(client, "0" * 32, "male")
    assert unknown.status_code == 404 and "expired" in unknown.json()["message"]
    bad_label = feedback(client, prediction["prediction_id"], "robot")
    assert (bad_label.status_code, bad_label.json()["error"]) == (422, "invalid_label")
    unsafe = feedback(client, "../../x", "male")
    assert (unsafe.status_code, unsafe.json()["error"]) == (422, "invalid_prediction_id")
    not_json = client.post("/feedback", content=b"{nope", headers={"content-type": "application/json"})
    assert (not_json.status_code, not_json.json()["error"]) == (422, "invalid_json")
    form = client.post("/feedback", data={"prediction_id": prediction["prediction_id"], "correct_label": "male"})
    assert (form.status_code, form.json()["error"]) == (415, "json_required")
    assert stored_rows(client) == []
    # The refused attempts did not use up the prediction.
    assert feedback(client, prediction["prediction_id"], "male").status_code == 200


def test_feedback_without_consent_stores_nothing(client: TestClient, voices: dict[str, Path], tmp_path: Path):
    prediction = upload(client, voices["high"]).json()
    for consent in ({}, {"consent": False}, {"consent": "yes"}, {"consent": 1}):
        response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"],
                                                  "correct_label": "male", **consent})
        assert (response.status_code, response.json()["error"]) == (422, "consent_required"), consent
    assert stored_rows(client) == []
    assert list((tmp_path / "feedback").glob("*male/*")) == []
    assert feedback(client, prediction["prediction_id"], "male").status_code == 200


def test_feedback_field_names_are_strict(client: TestClient, voices: dict[str, Path]):
    prediction = upload(client, voices["high"]).json()
    response = feedback(client, prediction["prediction_id"], "male", gender="female")
    assert (response.status_code, response.json()["error"]) == (422, "unknown_fields")
    assert response.json()["fields"] == ["gender"]
    assert stored_rows(client) == []


def test_feedback_on_a_mixed_clip_is_refused(tmp_path: Path):
    """A low voice then a high one: the windows disagree, so no single label describes the clip."""
    model = tilt_model(tmp_path / "right.onnx", right=True)
    two = tmp_path / "two.wav"
    sf.write(two, np.concatenate([synthetic_voice(120.0, 4.0), synthetic_voice(220.0, 4.0, seed=1)]), SR)
    with make_client(model, tmp_path / "fb") as client:
        prediction = upload(client, two).json()
        assert prediction["mixed"] is True
        response = feedback(client, prediction["prediction_id"], "male")
        assert (response.status_code, response.json()["error"]) == (422, "mixed_clip")
        assert stored_rows(client) == [] and list(services(client).recent.directory.iterdir()) == []


def test_feedback_on_a_clip_without_speech_is_refused(client: TestClient, tmp_path: Path, rng):
    path = tmp_path / "hiss.wav"
    sf.write(path, (0.01 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    prediction = upload(client, path).json()
    assert prediction["label"] == "no_speech" and prediction["p_female"] is None
    response = feedback(client, prediction["prediction_id"], "male")
    assert (response.status_code, response.json()["error"]) == (422, "no_speech")
    assert stored_rows(client) == []
    assert list((tmp_path / "feedback").rglob("*.wav")) == []


def test_concurrent_feedback_requests(client: TestClient, voices: dict[str, Path], tmp_path: Path):
    ids = [upload(client, voices["low" if i % 2 else "high"]).json()["prediction_id"] for i in range(16)]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(prediction_id: str, label: str) -> None:
        status = feedback(client, prediction_id, label).status_code
        with lock:
            statuses.append(status)

    # Every id twice, from different threads: exactly one of each pair is stored, the other gets 409.
    threads = [threading.Thread(target=send, args=(pid, label)) for pid in ids for label in ("female", "male")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 16 + [409] * 16
    assert sorted(r.prediction_id for r in stored_rows(client)) == sorted(ids)
    stored = sorted(p.stem for p in (tmp_path / "feedback").glob("*male/*.wav"))
    assert stored == sorted(ids)


def test_retraining_fires_once_at_the_threshold(tiny_model: Path, tmp_path: Path, voices: dict[str, Path]):
    markers = tmp_path / "markers"
    markers.mkdir()
    code = "import pathlib, sys, uuid; pathlib.Path(sys.argv[1], uuid.uuid4().hex).write_text(sys.argv[2])"
    command = f"{{python}} -c {shlex.quote(code)} {shlex.quote(str(markers))} {{feedback_dir}}"
    with make_client(tiny_model, tmp_path / "fb", retrain_threshold=3, retrain_command=command) as client:
        def correct(agree: bool) -> dict:
            prediction = upload(client, voices["low"]).json()
            other = "male" if prediction["label"] == "female" else "female"
            response = feedback(client, prediction["prediction_id"], prediction["label"] if agree else other)
            assert response.status_code == 200, response.text
            return response.json()

        assert correct(agree=True)["feedback"]["corrections_pending"] == 0  # agreements do not count
        assert not correct(agree=False)["retrain_started"]
        assert not correct(agree=False)["retrain_started"]
        assert list(markers.iterdir()) == []
        third = correct(agree=False)
        assert third["retrain_started"]
        run = services(client).jobs.wait(60)
        assert run.status == "succeeded" and run.id == 1
        assert correct(agree=False)["retrain_started"] is False
        runs = list(markers.iterdir())
        assert len(runs) == 1
        assert Path(runs[0].read_text()) == (tmp_path / "fb").resolve()
        state = client.get("/feedback").json()
        assert state["retraining"]["runs"] == 1 and state["corrections_pending"] == 1
        assert state["retraining"]["status"] == "succeeded"


# --- the command and the real server --------------------------------------------------------------

def test_importing_serve_does_not_import_fastapi():
    code = ("import sys, edge.serve.app; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_runtime_does_not_import_the_server():
    """edge's core (predict, listen, the models list) never loads edge.serve; 'gvd models promote' does, lazily."""
    code = ("import sys, edge, edge.detector, edge.stream, edge.commands\n"
            "from edge.cli import cli\n"
            "try:\n    cli(['models', '--json'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('edge.serve')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_serve_help_and_bad_model():
    runner = CliRunner()
    result = runner.invoke(serve, ["--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--model", "--feedback-dir", "--max-upload-mb", "--retrain-threshold",
                   "--retrain-command"):
        assert option in result.output
    result = runner.invoke(serve, ["--model", "/nonexistent/model.onnx"])
    assert result.exit_code == 1
    assert "no such model file" in result.output


def test_real_server_refuses_huge_uploads_without_reading_them(tiny_model: Path, tmp_path: Path,
                                                               voices: dict[str, Path]):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", "--port", str(port), "--model", str(tiny_model),
         "--feedback-dir", str(tmp_path / "fb"), "--max-upload-mb", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        import httpx

        for _ in range(300):  # wait for start-up (not a timing assertion: up to 30 s)
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start")
        assert health.json()["model"] == "tiny"
        with open(voices["high"], "rb") as handle:
            ok = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("v.wav", handle)}, timeout=30)
        assert ok.status_code == 200 and ok.json()["label"] in ("female", "male")

        # Declares 2 GB: refused from the headers alone.
        head = (f"POST /predict?filename=x.wav HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                f"Content-Length: {2 * 1024 ** 3}\r\n\r\n").encode()
        answer = raw_request(port, head, [b"RIFF" + bytes(65532)])
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

        # Chunked, no length: refused once 1 MB has streamed in, long before the 2 GB the client would send.
        head = (b"POST /predict?filename=x.wav HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        piece = bytes(64 * 1024)
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
        sent = {"bytes": 0}

        def endless():
            for _ in range(2 * 1024 ** 3 // len(piece)):
                sent["bytes"] += len(piece)
                yield chunk

        psutil = pytest.importorskip("psutil")
        rss_before = psutil.Process(process.pid).memory_info().rss
        answer = raw_request(port, head, endless())
        rss_after = psutil.Process(process.pid).memory_info().rss
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # The server closed the connection: the client could push only socket buffers past the 1 MB limit,
        # and the server kept none of it in memory.
        assert sent["bytes"] < 64 * 1024 ** 2
        assert rss_after - rss_before < 32 * 1024 ** 2
        print(f"\n413 after the client pushed {sent['bytes'] / 2 ** 20:.1f} MB; server RSS "
              f"{rss_before / 2 ** 20:.0f} -> {rss_after / 2 ** 20:.0f} MB")
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200  # still serving
    finally:
        process.terminate()
        process.wait(30)
