"""Bounded work: the audio-length limit, the inference queue, abandoned requests, disk quotas and
rates (findings 3, 4)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("onnx")

from edge.serve.duration import check_duration  # noqa: E402
from edge.serve.errors import ApiError  # noqa: E402
from edge.serve.work import ClientGone, WorkQueue  # noqa: E402

from serve_fixtures import (  # noqa: E402
    SR,
    RealServer,
    feedback,
    make_client,
    services,
    stored_rows,
    synthetic_voice,
    upload,
    write_voice,
)


def long_flac(path: Path, minutes: float = 10.0) -> Path:
    """Ten minutes of voice at 8 kHz (about 3 MB of FLAC): real work for a model that accepted it."""
    rate = 8000
    voice = synthetic_voice(200.0, seconds=6.0)[::2]  # 16 kHz -> 8 kHz by decimation: a test signal, not hi-fi
    repeats = int(np.ceil(minutes * 60 * rate / voice.size))
    sf.write(path, np.tile(voice, repeats)[: int(minutes * 60 * rate)], rate, format="FLAC")
    return path


def test_a_ten_minute_file_is_refused_before_the_work_and_does_not_delay_others(tiny_model, tmp_path):
    """Finding 3: a 10-minute file held the inference lock for 9.5 s; a 3 s clip behind it waited 8.5 s."""
    import httpx

    ten_minutes = long_flac(tmp_path / "ten.flac")
    short = write_voice(tmp_path / "short.wav", 220.0, seconds=3.0)
    server = RealServer(tiny_model, tmp_path / "fb", "--max-audio-seconds", "60").start()
    try:
        def post(path: Path) -> tuple[int, dict, float]:
            tick = time.perf_counter()
            with open(path, "rb") as handle:
                response = httpx.post(f"{server.url}/predict", files={"file": (path.name, handle)}, timeout=60)
            return response.status_code, response.json(), time.perf_counter() - tick

        with ThreadPoolExecutor(2) as pool:
            long_job = pool.submit(post, ten_minutes)
            time.sleep(0.05)
            short_job = pool.submit(post, short)
            status, body, long_seconds = long_job.result()
            short_status, short_body, short_seconds = short_job.result()
        print(f"\n10-minute file: {status} in {long_seconds:.2f} s; 3 s clip: {short_status} in {short_seconds:.2f} s")
        assert (status, body["error"], body["max_audio_seconds"]) == (422, "audio_too_long", 60.0)
        assert "600.0 s" in body["message"] and "60 s" in body["message"]
        assert short_status == 200 and short_body["label"] in ("female", "male")
        assert long_seconds < 3.0 and short_seconds < 3.0
    finally:
        server.stop()


def test_compressed_audio_is_counted_by_decoding_up_to_the_limit(tmp_path):
    """A compressed file's header cannot be trusted: it is decoded, and only up to the limit."""
    pytest.importorskip("av")
    path = tmp_path / "voice.mp3"
    sf.write(path, np.tile(synthetic_voice(200.0, seconds=2.0), 5), SR, format="MP3")  # ~13 s
    with pytest.raises(ApiError) as info:
        check_duration(path, limit=5.0)
    assert info.value.error == "audio_too_long" and info.value.extra["max_audio_seconds"] == 5.0
    check_duration(path, limit=30.0)


def _blocking(release: threading.Event, ran: list, name: str) -> str:
    release.wait(10)
    ran.append(name)
    return name


async def _stays() -> bool:
    return False


def test_the_queue_refuses_with_503_and_retry_after_when_full():
    """Finding 3: requests queued without bound behind the single inference lock."""
    async def scenario():
        queue = WorkQueue(workers=1, max_waiting=1)
        release, ran = threading.Event(), []
        first = asyncio.ensure_future(queue.run(_stays, _blocking, release, ran, "first"))
        second = asyncio.ensure_future(queue.run(_stays, _blocking, release, ran, "second"))
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as info:
            await queue.run(_stays, _blocking, release, ran, "third")
        assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
        release.set()
        assert (await first, await second) == ("first", "second")
        assert queue.pending == 0 and queue.refused == 1 and ran == ["first", "second"]
        queue.close()

    asyncio.run(scenario())


def test_a_request_whose_client_left_is_dropped_before_its_turn():
    """Finding 3: abandoned requests kept running; now a queued job whose client left never starts."""
    async def scenario():
        queue = WorkQueue(workers=1, max_waiting=4)
        release, ran = threading.Event(), []
        gone = {"flag": False}

        async def second_client() -> bool:
            return gone["flag"]

        first = asyncio.ensure_future(queue.run(_stays, _blocking, release, ran, "first"))
        second = asyncio.ensure_future(queue.run(second_client, _blocking, release, ran, "second"))
        await asyncio.sleep(0.05)
        gone["flag"] = True  # the second client closes its connection while waiting
        with pytest.raises(ClientGone):
            await second
        release.set()
        assert await first == "first"
        await asyncio.sleep(0.1)
        assert ran == ["first"] and queue.pending == 0 and queue.abandoned == 1
        queue.close()

    asyncio.run(scenario())


def test_feedback_quota_and_per_client_rate(tiny_model, tmp_path, voices):
    """Finding 4: 10 posts of a 19 MB WAV stored 190 MB in 3.8 s: no quota, no rate limit."""
    size = voices["low"].stat().st_size
    with make_client(tiny_model, tmp_path / "fb", feedback_max_mb=2.5 * size / 2 ** 20,
                     corrections_per_minute=1000) as client:
        statuses = [feedback(client, upload(client, voices["low"]).json()["prediction_id"], "female").status_code
                    for _ in range(4)]
        assert statuses == [200, 200, 507, 507]
        full = feedback(client, upload(client, voices["low"]).json()["prediction_id"], "female")
        assert full.json()["error"] == "storage_full" and "MB" in full.json()["message"]
        stored = sum(p.stat().st_size for p in (tmp_path / "fb").glob("*male/*"))
        assert stored <= 2.5 * size
    with make_client(tiny_model, tmp_path / "fb2", corrections_per_minute=2) as client:
        ids = [upload(client, voices["low"]).json()["prediction_id"] for _ in range(3)]
        assert [feedback(client, i, "female").status_code for i in ids[:2]] == [200, 200]
        limited = feedback(client, ids[2], "female")
        assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        assert len(stored_rows(client)) == 2


def test_kept_uploads_are_bounded_in_bytes(tiny_model, tmp_path, voices):
    """Finding 4: uploads kept for feedback are capped in total size as well as in number."""
    size = voices["low"].stat().st_size
    with make_client(tiny_model, tmp_path / "fb", recent_max_mb=2.5 * size / 2 ** 20) as client:
        for _ in range(5):
            assert upload(client, voices["low"]).status_code == 200
        kept = list(services(client).recent.directory.iterdir())
        assert len(kept) == 2 and sum(p.stat().st_size for p in kept) <= 2.5 * size
