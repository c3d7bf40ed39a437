"""Retraining as a managed job: refused without the training extra, failures give the corrections
back, the status survives a server restart, and no run outlives its server (findings 5, 8)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("onnx")

from edge.serve import jobs as jobs_module  # noqa: E402
from edge.serve.jobs import RetrainJobs, RetrainOptions, retraining_availability  # noqa: E402
from edge.serve.store import FeedbackStore  # noqa: E402

from serve_fixtures import feedback, make_client, services, upload  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    return path


def _corrections(store: FeedbackStore, clip: Path, n: int) -> None:
    for _ in range(n):
        store.add(clip, prediction_id=uuid.uuid4().hex, predicted_label="male", p_female=0.2,
                  correct_label="female", model="m", client="c")


def _wrong(label: str) -> str:
    return "male" if label == "female" else "female"


def test_retraining_is_off_without_the_training_extra(tiny_model, tmp_path, voices, monkeypatch):
    """Finding 5: with [serve,formats] (no TensorFlow) the 20th correction said 'retraining has
    started', the run failed in a second and the corrections were used up."""
    real_find_spec = jobs_module.importlib.util.find_spec
    monkeypatch.setattr(jobs_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real_find_spec(name, *a))
    availability = retraining_availability(jobs_module.DEFAULT_RETRAIN_COMMAND)
    assert not availability.available and "pip install 'gvd[train]'" in availability.reason
    with make_client(tiny_model, tmp_path / "fb", retrain_threshold=2) as client:
        health = client.get("/health").json()["retraining"]
        assert health["available"] is False and "tensorflow" in health["reason"]
        for _ in range(3):
            prediction = upload(client, voices["low"]).json()
            answer = feedback(client, prediction["prediction_id"], _wrong(prediction["label"])).json()
            assert answer["retrain_started"] is False
        state = client.get("/feedback").json()
        assert state["corrections_pending"] == 3 and state["retraining"]["available"] is False
        assert state["retraining"]["runs"] == 0 and not (tmp_path / "fb" / "runs").exists()


def test_a_failed_run_gives_its_corrections_back(tmp_path, clip):
    """Finding 5: a failed run used the corrections up; now they count for the next run."""
    store = FeedbackStore(tmp_path / "fb")
    # The run lasts a moment, so that "used up while it runs" can be seen before it fails.
    jobs = RetrainJobs(store, RetrainOptions(threshold=2, command="echo training; sleep 1; exit 3"))
    _corrections(store, clip, 2)
    assert jobs.maybe_start()
    assert store.totals().pending == 0
    run = jobs.wait(30)
    assert (run.status, run.returncode) == ("failed", 3)
    assert store.totals().pending == 2
    assert (store.root / "runs" / "1" / "retrain.log").read_text().strip() == "training"
    _corrections(store, clip, 1)
    assert jobs.maybe_start() and jobs.wait(30).id == 2  # the given-back corrections count again


def test_a_command_that_cannot_start_fails_once_and_gives_back(tmp_path, clip):
    store = FeedbackStore(tmp_path / "fb")
    jobs = RetrainJobs(store, RetrainOptions(threshold=1, command="true", cwd=str(tmp_path / "missing")))
    _corrections(store, clip, 1)
    assert jobs.maybe_start() is False
    run = jobs.runs(1)[0]
    assert run.status == "failed" and "could not start" in run.note
    assert store.totals().pending == 1


STARTER = """
import sys, time, uuid
from pathlib import Path
from edge.serve.jobs import RetrainJobs, RetrainOptions
from edge.serve.store import FeedbackStore
store = FeedbackStore(sys.argv[1])
store.add(Path(sys.argv[2]), prediction_id=uuid.uuid4().hex, predicted_label="male", p_female=0.2,
          correct_label="female", model="m", client="c")
jobs = RetrainJobs(store, RetrainOptions(threshold=1, command=sys.argv[3]))
assert jobs.maybe_start()
print("started", flush=True)
time.sleep(60)
"""


def _start_then_kill_server(tmp_path: Path, clip: Path, command: str) -> None:
    """A 'server' that starts a run and is then killed with SIGKILL while the run goes on."""
    process = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path / "fb"), str(clip), command],
                               stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout.readline().strip() == b"started"
    process.kill()
    process.wait(10)


@pytest.mark.parametrize("code,status,pending", [(0, "succeeded", 0), (4, "failed", 1)])
def test_a_run_that_ends_after_a_restart_is_reported_by_its_exit_code(tmp_path, clip, code, status, pending):
    """Finding 8: a run that finished after a server restart was reported 'interrupted'."""
    go = tmp_path / "go"
    _start_then_kill_server(tmp_path, clip, f"while [ ! -e {go} ]; do sleep 0.05; done; exit {code}")
    store = FeedbackStore(tmp_path / "fb")
    jobs = RetrainJobs(store, RetrainOptions(threshold=1, command="true"))
    assert jobs.active() is not None and jobs.active().status == "running"  # adopted, still going
    go.touch()  # now the run ends, watched only by the new server
    run = jobs.wait(30)
    assert (run.status, run.returncode) == (status, code)
    assert store.totals().pending == pending


def test_a_run_whose_group_died_unseen_is_interrupted_and_gives_back(tmp_path, clip):
    _start_then_kill_server(tmp_path, clip, "sleep 30")
    store = FeedbackStore(tmp_path / "fb")
    pid = store.query("SELECT pid FROM runs WHERE id = 1")[0][0]
    os.killpg(pid, 9)  # the trainer dies while no server watches it
    time.sleep(0.2)
    jobs = RetrainJobs(store, RetrainOptions(threshold=1, command="true"))
    assert jobs.runs(1)[0].status == "interrupted" and store.totals().pending == 1


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stopping_the_server_terminates_the_whole_run_group(tiny_model, tmp_path, voices):
    """Finding 8: the trainer outlived the server; now shutdown terminates the run's process group
    (the shell and everything it started) and gives the corrections back."""
    with make_client(tiny_model, tmp_path / "fb", retrain_threshold=1,
                     retrain_command="sleep 60 & sleep 60; wait") as client:
        prediction = upload(client, voices["low"]).json()
        assert feedback(client, prediction["prediction_id"], _wrong(prediction["label"])).json()["retrain_started"]
        run = services(client).jobs.active()
        assert run.status == "running" and not _group_gone(run.pid)
        store = services(client).store
    assert _group_gone(run.pid)
    again = FeedbackStore(tmp_path / "fb")
    assert again.totals().pending == 1
    assert [(r.status, r.note) for r in RetrainJobs(again, RetrainOptions(command="true")).runs()] == [
        ("cancelled", "the server stopped; the run was terminated")]
    assert store is not None


def test_retrain_command_placeholders(tmp_path, clip):
    store = FeedbackStore(tmp_path / "fb")
    jobs = RetrainJobs(store, RetrainOptions(threshold=1, command="{python} -c 'import sys; print(sys.argv[1:])' "
                                                                  "{feedback_dir} {out} {run}"))
    _corrections(store, clip, 1)
    assert jobs.maybe_start()
    assert jobs.wait(30).status == "succeeded"
    logged = (store.root / "runs" / "1" / "retrain.log").read_text().strip()
    assert logged == repr([str(store.root), str(store.root / "runs" / "1"), "1"])
    assert json.loads((store.root / "runs" / "1" / "exit_code").read_text()) == 0
    assert shlex.quote(sys.executable) in jobs.runs(1)[0].command
