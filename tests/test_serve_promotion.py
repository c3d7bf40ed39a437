"""Safe promotion: candidates evaluated on a fixed speaker-disjoint held-out set plus recent corrections,
versions kept, promote/rollback/history, hot swap in a running server (finding 9)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402

from edge.cli import cli  # noqa: E402
from edge.serve.promotion import Evaluation, LabelledClip, PromotionError, Registry, decide, load_holdout, promote  # noqa: E402

from serve_fixtures import HIGH_VOICES, LOW_VOICES, make_client, services, tilt_model, upload, write_voice  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"right": tilt_model(folder / "right.onnx", right=True),
            "wrong": tilt_model(folder / "wrong.onnx", right=False)}


@pytest.fixture(scope="module")
def holdout_csv(tmp_path_factory) -> Path:
    """Two corpora, a low (male) and a high (female) synthetic speaker each."""
    folder = tmp_path_factory.mktemp("holdout")
    rows = ["file,label,corpus,speaker"]
    for corpus, (low, high) in {"a": (LOW_VOICES[0], HIGH_VOICES[0]), "b": (LOW_VOICES[2], HIGH_VOICES[2])}.items():
        for label, f0 in (("male", low), ("female", high)):
            name = f"{corpus}_{label}.wav"
            write_voice(folder / name, f0, seed=len(rows))
            rows.append(f"{name},{label},{corpus},{corpus}{label[0]}")
    (folder / "holdout.csv").write_text("\n".join(rows) + "\n")
    return folder / "holdout.csv"


def _evaluation(worst: float, corrections: float | None) -> Evaluation:
    return Evaluation("m", "sha", 4, {"a": worst}, "a", worst, 0 if corrections is None else 10, corrections)


def test_the_decision_rule():
    assert decide(_evaluation(0.9, 0.8), _evaluation(0.9, 0.8)).promote  # not worse is enough
    refused = decide(_evaluation(0.89, 1.0), _evaluation(0.9, 0.5))
    assert not refused.promote and "held-out" in refused.reasons[0]
    refused = decide(_evaluation(0.95, 0.4), _evaluation(0.9, 0.5))
    assert not refused.promote and "corrections" in refused.reasons[0]
    assert decide(_evaluation(0.5, None), None).promote  # nothing to compare with


def test_a_better_candidate_is_promoted_and_a_worse_one_refused(models, holdout_csv, tmp_path):
    """Finding 9: new models were never evaluated or promoted; shipping one was manual."""
    registry = Registry(tmp_path / "registry")
    holdout = load_holdout(holdout_csv)
    decision, version = promote(models["right"], registry, holdout, models["wrong"], [], source="test")
    assert decision.promote and version.name == "promoted-1"
    assert decision.candidate.worst_balanced_accuracy == 1.0 and decision.baseline.worst_balanced_accuracy == 0.0
    assert registry.current().path.read_bytes() == models["right"].read_bytes()
    decision, version = promote(models["wrong"], registry, holdout, None, [], source="worse")
    assert not decision.promote and version is None and "worse on the held-out set" in decision.reasons[0]
    assert registry.current().name == "promoted-1" and len(registry.versions()) == 1
    assert [e["action"] for e in registry.history()] == ["promoted", "refused"]
    assert registry.history()[0]["candidate"]["holdout_sha256"] == holdout.sha256


def test_recent_corrections_are_part_of_the_comparison(models, holdout_csv, tmp_path):
    registry = Registry(tmp_path / "registry")
    clip = write_voice(tmp_path / "corr.wav", 120.0)
    corrections = [LabelledClip(clip, "female", "corrections")]  # the user says this low voice is a woman
    # Same held-out score (the same model), but the candidate must not be worse on the corrections either.
    decision, _ = promote(models["right"], registry, load_holdout(holdout_csv), models["right"], corrections, "same")
    assert decision.promote and decision.candidate.corrections == 1
    registry_2 = Registry(tmp_path / "registry2")
    decision, version = promote(models["right"], registry_2, load_holdout(holdout_csv), models["wrong"], corrections,
                                "worse on corrections")
    assert not decision.promote and version is None and "corrections" in decision.reasons[-1]


def test_a_held_out_set_the_candidate_was_trained_on_is_refused(models, holdout_csv, tmp_path):
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "train").mkdir()
    candidate = run / "models" / "gru.onnx"
    shutil.copyfile(models["right"], candidate)
    (run / "train" / "data_manifest.json").write_text(json.dumps([{"corpus": "a", "speaker": "am", "label": "male"}]))
    with pytest.raises(PromotionError, match="not held out"):
        promote(candidate, Registry(tmp_path / "registry"), load_holdout(holdout_csv), None, [], "leaky")


def test_promote_rollback_history_commands(models, holdout_csv, tmp_path):
    runner = CliRunner()
    common = ["--registry", str(tmp_path / "registry")]
    promote_args = ["models", "promote", "--holdout", str(holdout_csv), "--feedback-dir", str(tmp_path / "fb"),
                    *common, "--baseline", str(models["wrong"])]
    result = runner.invoke(cli, [*promote_args, str(models["right"])])
    assert result.exit_code == 0, result.output
    assert "promoted as promoted-1" in result.output and "worst corpus" in result.output
    result = runner.invoke(cli, [*promote_args, "--json", str(models["wrong"])])
    assert result.exit_code == 1 and json.loads(result.output)["promote"] is False
    history = runner.invoke(cli, ["models", "history", *common])
    assert history.exit_code == 0 and "promoted" in history.output and "refused" in history.output
    rollback = runner.invoke(cli, ["models", "rollback", *common])
    assert rollback.exit_code == 0 and "shipped model" in rollback.output
    again = runner.invoke(cli, ["models", "rollback", *common])
    assert again.exit_code == 1 and "nothing to roll back" in again.output
    assert runner.invoke(cli, ["models", "--json"]).exit_code == 0  # plain 'gvd models' still lists


def test_the_server_swaps_models_without_restart_or_dropped_requests(models, holdout_csv, tmp_path):
    voice = write_voice(tmp_path / "high.wav", 220.0)
    with make_client(models["wrong"], tmp_path / "fb", registry_dir=tmp_path / "registry") as client:
        assert client.get("/health").json()["model"] == "wrong"
        answers: list[tuple[int, str]] = []
        stop = threading.Event()

        def keep_predicting() -> None:
            while not stop.is_set():
                response = upload(client, voice)
                answers.append((response.status_code, response.json().get("model")))

        worker = threading.Thread(target=keep_predicting)
        worker.start()
        time.sleep(0.3)
        registry = Registry(tmp_path / "registry")
        promote(models["right"], registry, load_holdout(holdout_csv), models["wrong"], [], "swap test")
        deadline = time.monotonic() + 10
        while client.get("/health").json()["model"] != "promoted-1" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        worker.join()
        assert client.get("/health").json()["model"] == "promoted-1"
        assert all(status == 200 for status, _ in answers) and {m for _, m in answers} == {"wrong", "promoted-1"}
        entries = {m["name"]: m for m in client.get("/models").json()}
        assert entries["promoted-1"]["default"] and entries["promoted-1"]["kind"] == "promoted"
        assert upload(client, voice).json()["label"] == "female"  # the right model is serving
        assert upload(client, voice, url="/predict?model=wrong").json()["label"] == "male"  # still selectable
        registry.rollback()
        deadline = time.monotonic() + 10
        while client.get("/health").json()["model"] != "wrong" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/health").json()["model"] == "wrong"


MAKE_CANDIDATE = """
import hashlib, json, shutil, sys
from pathlib import Path
source, out = Path(sys.argv[1]), Path(sys.argv[2]) / "models"
out.mkdir(parents=True)
shutil.copyfile(source, out / "gru.onnx")
digest = hashlib.sha256((out / "gru.onnx").read_bytes()).hexdigest()
size = (out / "gru.onnx").stat().st_size
entry = {"name": "gru", "file": "gru.onnx", "sha256": digest, "cell": "gru", "size_bytes": size,
         "quantized": False, "metrics": {}, "description": "retrained"}
(out / "manifest.json").write_text(json.dumps({"format_version": 1, "default": "gru", "models": [entry]}))
"""


@pytest.mark.parametrize("served,trained", [("wrong", "right"), ("right", "wrong")])
def test_a_successful_retraining_run_is_evaluated_and_promoted_only_if_not_worse(models, holdout_csv, tmp_path,
                                                                                 served, trained):
    """Finding 9 end to end: the run's new model is compared with the served one and swapped in, or not."""
    script = tmp_path / "make_candidate.py"
    script.write_text(MAKE_CANDIDATE)
    command = f"{{python}} {script} {models[trained]} {{out}}"
    voice = write_voice(tmp_path / "low.wav", 120.0)
    with make_client(models[served], tmp_path / "fb", registry_dir=tmp_path / "registry", holdout=holdout_csv,
                     retrain_threshold=1, retrain_command=command) as client:
        prediction = upload(client, voice).json()
        response = client.post("/feedback", json={"prediction_id": prediction["prediction_id"],
                                                  "correct_label": _wrong(prediction["label"]), "consent": True})
        assert response.json()["retrain_started"] is True
        run = services(client).jobs.wait(120)
        assert run.status == "succeeded"
        if trained == "right":
            assert run.note == "promoted as promoted-1", run.note
            deadline = time.monotonic() + 10
            while client.get("/health").json()["model"] != "promoted-1" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert upload(client, voice).json()["label"] == "male"
        else:
            assert run.note.startswith("not promoted: worse on the held-out set"), run.note
            assert client.get("/health").json()["model"] == served
            assert [e["action"] for e in Registry(tmp_path / "registry").history()] == ["refused"]


def _wrong(label: str) -> str:
    return "male" if label == "female" else "female"


def test_a_promoted_model_that_cannot_load_is_never_swapped_in(models, holdout_csv, tmp_path):
    registry = Registry(tmp_path / "registry")
    with make_client(models["wrong"], tmp_path / "fb", registry_dir=registry.root) as client:
        promote(models["right"], registry, load_holdout(holdout_csv), models["wrong"], [], "good")
        services(client).pool.refresh(force=True)
        health = client.get("/health").json()
        assert (health["model"], health["model_version"]) == ("promoted-1", "test-1")
        version = registry.current()
        broken = registry.root / "versions" / "2" / "promoted-2.onnx"
        broken.parent.mkdir(parents=True)
        broken.write_bytes(b"not a model")
        state = json.loads(registry.path.read_text())
        registry.path.write_text(json.dumps({**state, "current": 2}))  # as if promoted, but damaged on disk
        services(client).pool.refresh(force=True)
        assert client.get("/health").json()["model"] == version.name  # still the last good one
        assert upload(client, write_voice(tmp_path / "v.wav", 220.0)).status_code == 200
