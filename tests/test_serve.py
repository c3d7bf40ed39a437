"""``gvd serve``: the HTTP API, its upload limits and error codes, the feedback loop, and the web page.

The model is a tiny ONNX graph built here (mean over time -> linear -> sigmoid) carrying real gvd
metadata, and the audio is a synthetic voice (harmonics under formant peaks), so the tests need
neither the shipped models nor the shared recordings.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import socket
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
from edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata  # noqa: E402
from edge.serve.app import ServeOptions, create_app, serve  # noqa: E402
from edge.settings import DEFAULT_SETTINGS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SR = 16000


def build_model(path: Path, weights: np.ndarray, bias: float = 0.0) -> Path:
    """features [batch, time, 13] -> ReduceMean(time) -> MatMul -> Add -> Sigmoid -> p_female [batch, 1]."""
    from onnx import TensorProto, helper, numpy_helper

    width = DEFAULT_SETTINGS.n_features
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logit_raw"]),
            helper.make_node("Add", ["logit_raw", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], [OUTPUT_NAME]),
        ],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "time", width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(weights.reshape(width, 1).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([bias], np.float32), "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    # Raw MFCC means (no per-window normalisation) so that the output depends on the voice.
    metadata = ModelMetadata(feature_settings=DEFAULT_SETTINGS.with_changes(feature_norm="none"), cell="gru",
                             model_version="test-1", created="2026-01-01T00:00:00Z", metrics={"accuracy": 0.5})
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def synthetic_voice(f0: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Harmonics of f0 shaped by three formant peaks, with a syllable-rate envelope and silent edges."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        f = k * f0
        amplitude = sum(np.exp(-0.5 * ((f - F) / bw) ** 2) for F, bw in ((700, 130), (1200, 150), (2600, 200)))
        y += (amplitude + 0.05) / np.sqrt(k) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    y = 0.3 * y / np.abs(y).max()
    pad = np.zeros(int(0.3 * SR))
    return np.concatenate([pad, y, pad]).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    weights = np.zeros(DEFAULT_SETTINGS.n_features)
    weights[1] = 0.05  # the spectral tilt coefficient: differs between the two synthetic voices
    return build_model(tmp_path_factory.mktemp("model") / "tiny.onnx", weights)


@pytest.fixture(scope="session")
def voices(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio")
    files = {}
    for name, f0 in (("low", 120.0), ("high", 220.0)):
        path = folder / f"{name}.wav"
        sf.write(path, synthetic_voice(f0), SR, subtype="PCM_16")
        files[name] = path
    flac = folder / "high.flac"
    sf.write(flac, synthetic_voice(220.0, seed=1), SR)
    files["flac"] = flac
    return files


def make_client(model: Path, feedback_dir: Path, **options) -> TestClient:
    app = create_app(ServeOptions(model=str(model), feedback_dir=feedback_dir, **options))
    return TestClient(app)


@pytest.fixture
def client(tiny_model: Path, tmp_path: Path):
    with make_client(tiny_model, tmp_path / "feedback") as test_client:
        yield test_client


def upload(client: TestClient, path: Path, name: str | None = None, url: str = "/predict", **data):
    with open(path, "rb") as handle:
        return client.post(url, files={"file": (name or path.name, handle.read(), "application/octet-stream")},
                           data=data or None)


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "feedback.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


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


def test_page_is_self_contained(client: TestClient):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for feature in ("MediaRecorder", "getUserMedia", 'fetch("predict"', 'fetch("feedback"', "timeline"):
        assert feature in page
    # No CDN or any other external resource: the page must work on an offline device.
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


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
    with TestClient(app) as client:
        body = client.get("/models").json()
    model_module.clear_cache()
    assert body["loaded"] == "tiny"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny", "other"}
    assert by_name["tiny"]["loaded"] is True and by_name["other"]["loaded"] is False
    assert by_name["other"]["metrics"] == {"accuracy": 0.25}
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
    assert set(body["timings_ms"]) >= {"decode", "frames", "inference", "total"}
    assert len(body["prediction_id"]) == 32 and body["filename"] == voices[name].name
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
    return sorted(client.app.state.recent.directory.iterdir())


def test_too_large_upload_is_refused_with_413(tiny_model: Path, tmp_path: Path, voices: dict[str, Path]):
    # 0.05 MB limit; the 2.6 s, 16-bit clip is about 83 KB.
    with make_client(tiny_model, tmp_path / "fb", max_upload_mb=0.05) as client:
        response = upload(client, voices["low"])
        assert response.status_code == 413
        assert "limit" in response.json()["detail"]

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
    assert body["error"] == type(expected).__name__
    assert isinstance(expected, edge.AudioError)
    # The same message the library gives, about the user's file name (not the server's temporary copy).
    assert body["detail"] == str(expected).replace(str(path), name)
    assert "gvd-recent" not in body["detail"]
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
    assert "[formats]" in response.json()["detail"]


def test_request_without_file_is_400(client: TestClient):
    assert client.post("/predict", data={"something": "else"}).status_code == 400
    response = client.post("/predict", json={"file": "x.wav"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["detail"]


def test_kept_uploads_are_bounded_and_removed_on_shutdown(tiny_model: Path, tmp_path: Path,
                                                         voices: dict[str, Path]):
    with make_client(tiny_model, tmp_path / "fb", recent_items=2) as client:
        ids = [upload(client, voices["high"]).json()["prediction_id"] for _ in range(3)]
        folder = client.app.state.recent.directory
        assert len(list(folder.iterdir())) == 2  # only the last two uploads are kept
        oldest = client.post("/feedback", json={"prediction_id": ids[0], "correct_label": "male"})
        assert oldest.status_code == 404
    assert not folder.exists()


# --- /feedback ------------------------------------------------------------------------------------

def test_feedback_by_prediction_id_stores_a_training_corpus(client: TestClient, voices: dict[str, Path],
                                                            tmp_path: Path):
    prediction = upload(client, voices["low"]).json()
    wrong = "male" if prediction["label"] == "female" else "female"
    response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"], "correct_label": wrong})
    assert response.status_code == 200, response.text
    body = response.json()
    stored = tmp_path / "feedback" / wrong / f"{prediction['prediction_id']}.wav"
    assert body["stored"]["file"] == f"{wrong}/{stored.name}"
    assert body["stored"]["correction"] is True
    assert stored.read_bytes() == voices["low"].read_bytes()
    rows = csv_rows(tmp_path / "feedback")
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == ["timestamp", "prediction_id", "file", "predicted_label", "p_female", "correct_label", "model"]
    assert row["prediction_id"] == prediction["prediction_id"]
    assert row["predicted_label"] == prediction["label"] and row["correct_label"] == wrong
    assert float(row["p_female"]) == pytest.approx(prediction["p_female"], abs=1e-6)
    assert row["model"] == "tiny"
    assert body["feedback"]["corrections_pending"] == 1 and body["feedback"]["threshold"] == 20
    assert client.get("/feedback").json()["rows"] == 1

    again = client.post("/feedback", json={"prediction_id": prediction["prediction_id"], "correct_label": wrong})
    assert again.status_code == 409
    assert len(csv_rows(tmp_path / "feedback")) == 1
    assert _recent_files(client) == []  # the temporary copy is gone once stored


def test_feedback_errors(client: TestClient, voices: dict[str, Path], tmp_path: Path):
    prediction = upload(client, voices["high"]).json()
    unknown = client.post("/feedback", json={"prediction_id": "0" * 32, "correct_label": "male"})
    assert unknown.status_code == 404 and "expired" in unknown.json()["detail"]
    bad_label = client.post("/feedback", json={"prediction_id": prediction["prediction_id"], "correct_label": "robot"})
    assert bad_label.status_code == 422
    unsafe = client.post("/feedback", json={"prediction_id": "../../x", "correct_label": "male"})
    assert unsafe.status_code == 422
    not_json = client.post("/feedback", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert not (tmp_path / "feedback" / "feedback.csv").exists()
    # The refused attempts did not use up the prediction.
    ok = client.post("/feedback", json={"prediction_id": prediction["prediction_id"], "correct_label": "male"})
    assert ok.status_code == 200


def test_feedback_on_a_clip_without_speech_is_refused(client: TestClient, tmp_path: Path, rng):
    path = tmp_path / "hiss.wav"
    sf.write(path, (0.01 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    prediction = upload(client, path).json()
    assert prediction["label"] == "no_speech" and prediction["p_female"] is None
    response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"], "correct_label": "male"})
    assert response.status_code == 422
    assert "no speech" in response.json()["detail"]
    assert not (tmp_path / "feedback" / "feedback.csv").exists()
    assert list((tmp_path / "feedback").rglob("*.wav")) == []


def test_feedback_with_an_upload_and_a_label(client: TestClient, voices: dict[str, Path], tmp_path: Path,
                                             tiny_model: Path):
    response = upload(client, voices["flac"], url="/feedback", correct_label="female")
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Detector(tiny_model).predict(voices["flac"])
    assert body["predicted_label"] == expected.label
    stored = tmp_path / "feedback" / "female" / f"{body['prediction_id']}.flac"
    assert stored.read_bytes() == voices["flac"].read_bytes()
    assert csv_rows(tmp_path / "feedback")[0]["correct_label"] == "female"
    missing_label = upload(client, voices["flac"], url="/feedback")
    assert missing_label.status_code == 422
    assert len(csv_rows(tmp_path / "feedback")) == 1


def test_concurrent_feedback_requests(client: TestClient, voices: dict[str, Path], tmp_path: Path):
    ids = [upload(client, voices["low" if i % 2 else "high"]).json()["prediction_id"] for i in range(16)]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(prediction_id: str, label: str) -> None:
        status = client.post("/feedback", json={"prediction_id": prediction_id, "correct_label": label}).status_code
        with lock:
            statuses.append(status)

    # Every id twice, from different threads: exactly one of each pair is stored, the other gets 409.
    threads = [threading.Thread(target=send, args=(pid, label)) for pid in ids for label in ("female", "male")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 16 + [409] * 16
    rows = csv_rows(tmp_path / "feedback")
    assert sorted(r["prediction_id"] for r in rows) == sorted(ids)
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
            response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"],
                                                      "correct_label": prediction["label"] if agree else other})
            assert response.status_code == 200, response.text
            return response.json()

        assert correct(agree=True)["feedback"]["corrections_pending"] == 0  # agreements do not count
        assert not correct(agree=False)["retrain_started"]
        assert not correct(agree=False)["retrain_started"]
        assert list(markers.iterdir()) == []
        third = correct(agree=False)
        assert third["retrain_started"]
        state = client.app.state.retrainer.wait(60)
        assert state["status"] == "succeeded" and state["runs"] == 1
        assert correct(agree=False)["retrain_started"] is False
        client.app.state.retrainer.wait(60)
        runs = list(markers.iterdir())
        assert len(runs) == 1
        assert Path(runs[0].read_text()) == (tmp_path / "fb").resolve()
        health = client.get("/feedback").json()
        assert health["retrain_runs"] == 1 and health["corrections_pending"] == 1


# --- the command and the real server --------------------------------------------------------------

def test_importing_serve_does_not_import_fastapi():
    code = "import sys, edge.serve.app; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raw_request(port: int, head: bytes, body_chunks, timeout: float = 30.0) -> bytes:
    """Send a request piece by piece and return what the server answered (it may answer early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the body and closed the connection: what we want to see
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        return answer


def test_real_server_refuses_huge_uploads_without_reading_them(tiny_model: Path, tmp_path: Path,
                                                               voices: dict[str, Path]):
    port = _free_port()
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
        answer = _raw_request(port, head, [b"RIFF" + bytes(65532)])
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
        answer = _raw_request(port, head, endless())
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
