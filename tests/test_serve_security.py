"""Request hygiene: forged cross-site posts, DNS rebinding, body limits, the admin token (findings 1, 2, 8)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnx")

from serve_fixtures import RealServer, feedback, make_client, raw_request, services, stored_rows, upload  # noqa: E402

EVIL = "https://evil.example"
SELF = "http://127.0.0.1:8000"


def _prediction(client, voices) -> str:
    return upload(client, voices["high"]).json()["prediction_id"]


def test_a_cross_site_form_post_cannot_record_feedback(client, voices):
    """Finding 1: a page on another site posted /feedback with fetch(no-cors, FormData): 5 forged rows."""
    prediction_id = _prediction(client, voices)
    form = client.post("/feedback", data={"prediction_id": prediction_id, "correct_label": "male"},
                       headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
    assert (form.status_code, form.json()["error"]) == (403, "cross_origin_refused")
    as_json = client.post("/feedback", json={"prediction_id": prediction_id, "correct_label": "male", "consent": True},
                          headers={"Origin": EVIL})
    assert (as_json.status_code, as_json.json()["error"]) == (403, "cross_origin_refused")
    for headers in ({"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        forged = client.post("/feedback", json={"prediction_id": prediction_id, "correct_label": "male",
                                                "consent": True}, headers=headers)
        assert forged.status_code == 403, headers
    assert stored_rows(client) == []
    # The page itself (same origin) and scripts without browser headers still work.
    same = client.post("/feedback", json={"prediction_id": prediction_id, "correct_label": "male", "consent": True},
                       headers={"Origin": SELF, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200, same.text
    assert len(stored_rows(client)) == 1


def test_a_cross_site_page_cannot_make_the_server_predict(client, voices):
    with open(voices["high"], "rb") as handle:
        response = client.post("/predict", files={"file": ("v.wav", handle.read(), "audio/wav")},
                               headers={"Origin": EVIL})
    assert response.status_code == 403
    assert list(services(client).recent.directory.iterdir()) == []


def test_dns_rebinding_is_refused_by_the_host_check(client, voices):
    """Finding 1: the Host header was not checked. After DNS rebinding the attacker's page is
    'same-origin' with the server under the attacker's name; the name is not this server's."""
    prediction_id = _prediction(client, voices)
    rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
    response = client.post("/feedback", json={"prediction_id": prediction_id, "correct_label": "male",
                                              "consent": True}, headers=rebound)
    assert (response.status_code, response.json()["error"]) == (400, "host_not_allowed")
    assert client.get("/feedback", headers={"Host": "evil.example:8000"}).status_code == 400  # no reading either
    assert stored_rows(client) == []
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host


def test_allow_origin_and_allow_host_for_a_reverse_proxy(tiny_model, tmp_path, voices):
    with make_client(tiny_model, tmp_path / "fb", allow_origins=("https://kiosk.example",),
                     allow_hosts=("voice.internal",)) as client:
        prediction_id = _prediction(client, voices)
        response = feedback(client, prediction_id, "male", **{})
        assert response.status_code == 200
        other = _prediction(client, voices)
        ok = client.post("/feedback", json={"prediction_id": other, "correct_label": "male", "consent": True},
                         headers={"Origin": "https://kiosk.example", "Host": "kiosk.example"})
        assert ok.status_code == 200, ok.text
        assert client.get("/health", headers={"Host": "voice.internal"}).status_code == 200
        assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        allowed = client.options("/feedback", headers={"Origin": "https://kiosk.example", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "https://kiosk.example"
        refused = client.options("/feedback", headers={"Origin": EVIL, **preflight})
        assert "access-control-allow-origin" not in refused.headers


def test_json_feedback_body_is_limited(client, voices):
    """Finding 2: a 200 MB JSON body was read into memory; now 413 past 16 KB, declared or streamed."""
    prediction_id = _prediction(client, voices)
    padded = json.dumps({"prediction_id": prediction_id, "correct_label": "male", "consent": True, "pad": "x" * 20_000})
    response = client.post("/feedback", content=padded, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")
    sent = {"bytes": 0}

    def stream():
        for _ in range(100):
            sent["bytes"] += 64 * 1024
            yield b" " * (64 * 1024)

    response = client.post("/feedback", content=stream(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert stored_rows(client) == []
    assert feedback(client, prediction_id, "male").status_code == 200  # the prediction was not used up


def test_real_server_refuses_a_huge_chunked_json_body_in_bounded_memory(tiny_model, tmp_path):
    """Finding 2 on a real server: 200 MB chunked to /feedback took the RSS to 688 MB before."""
    psutil = pytest.importorskip("psutil")
    server = RealServer(tiny_model, tmp_path / "fb").start()
    try:
        head = (b"POST /feedback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b" " * (64 * 1024)
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
        sent = {"bytes": 0}

        def body():
            for _ in range(200 * 16):  # 200 MB
                sent["bytes"] += len(piece)
                yield chunk

        before = psutil.Process(server.process.pid).memory_info().rss
        answer = raw_request(server.port, head, body())
        after = psutil.Process(server.process.pid).memory_info().rss
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent["bytes"] < 64 * 1024 ** 2
        assert after - before < 32 * 1024 ** 2
        print(f"\n413 after {sent['bytes'] / 2 ** 20:.1f} MB sent; "
              f"RSS {before / 2 ** 20:.0f} -> {after / 2 ** 20:.0f} MB")
    finally:
        server.stop()


def test_feedback_state_shows_no_paths_or_commands_without_the_admin_token(tiny_model, tmp_path, voices):
    """Finding 8: GET /feedback showed absolute server paths and the full retrain command to anyone."""
    token = "t" * 24
    command = "{python} -c 'print(1)'"
    with make_client(tiny_model, tmp_path / "fb", admin_token=token, retrain_threshold=1,
                     retrain_command=command) as client:
        prediction = upload(client, voices["low"]).json()
        wrong = "male" if prediction["label"] == "female" else "female"
        assert feedback(client, prediction["prediction_id"], wrong).json()["retrain_started"] is True
        services(client).jobs.wait(30)
        public = client.get("/feedback")
        assert public.status_code == 200
        text = public.text
        assert str(tmp_path) not in text and "python" not in text and "runs/" not in text
        assert public.json()["retraining"]["last"]["status"] == "succeeded"
        refused = client.get("/feedback?details=1")
        assert (refused.status_code, refused.json()["error"]) == (401, "admin_token_required")
        assert client.get("/feedback?details=1", headers={"Authorization": "Bearer wrong"}).status_code == 401
        admin = client.get("/feedback?details=1", headers={"Authorization": f"Bearer {token}"})
        assert admin.status_code == 200 and admin.json()["runs"][0]["out_dir"] == "runs/1"
        assert str(tmp_path) not in admin.text  # even the admin sees folder names, not server paths
        assert client.get("/models/history").status_code == 401


def test_admin_requests_beyond_localhost_need_a_token(tiny_model, tmp_path):
    with make_client(tiny_model, tmp_path / "fb", host="0.0.0.0") as client:
        response = client.get("/models/history")
        assert (response.status_code, response.json()["error"]) == (403, "admin_disabled")
    with pytest.raises(ValueError):
        make_client(tiny_model, tmp_path / "fb2", admin_token="short")


def test_every_error_has_the_same_shape(client):
    for response in (client.get("/nowhere"), client.delete("/predict"), client.post("/predict?model=nope"),
                     client.get("/health", headers={"Host": "x.example"})):
        body = response.json()
        assert set(body) >= {"error", "message"} and isinstance(body["error"], str), body
        assert body["error"].replace("_", "").isalpha()
