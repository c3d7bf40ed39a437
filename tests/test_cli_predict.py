"""`gvd predict` on good and bad inputs: every failure is specific, the others still get a result."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from edge.commands import models as models_command
from edge.commands import predict

from model_fixtures import REPO, SHIPPED_MANIFEST, make_model, shipped_models, voice

RATE = 16000


def run(args, input=None):
    return CliRunner().invoke(predict, [str(a) for a in args], input=input, catch_exceptions=False)


def records(result) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, result.stdout.splitlines())}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One file per kind of input, good and bad."""
    d = tmp_path_factory.mktemp("inputs")
    files = {}

    def add(name, data=None, rate=RATE, **kw):
        files[name] = d / name
        if data is not None:
            sf.write(files[name], data, rate, **kw)

    add("voice.wav", voice(210, 4.0))
    add("zeros.wav", np.zeros(3 * RATE, np.float32))
    add("rate_8k.wav", voice(210, 4.0, 8000), 8000)
    add("rate_192k.flac", voice(120, 4.0, 192000), 192000)
    six = np.stack([voice(210, 4.0, 48000, seed=c) for c in range(6)], axis=1)
    add("six_channels.wav", six, 48000)
    add("short.wav", voice(210, 0.1))
    nan = voice(210, 3.0)
    nan[1000:1010] = np.nan
    add("nan.wav", nan, subtype="FLOAT")
    inf = voice(210, 3.0)
    inf[500] = np.inf
    add("inf.wav", inf, subtype="FLOAT")
    add("empty.wav")
    files["empty.wav"].write_bytes(b"")
    add("text.wav")
    files["text.wav"].write_text("this is a shopping list, not a recording\n" * 20)
    add("corrupt.wav")
    good = io.BytesIO()
    sf.write(good, voice(210, 3.0), RATE, format="WAV")
    raw = bytearray(good.getvalue())
    raw[20:36] = b"\xff" * 16  # a WAV header whose format chunk is garbage
    files["corrupt.wav"].write_bytes(bytes(raw))
    return files


def test_every_bad_input_gets_a_specific_error_and_the_rest_is_processed(fake_model, inputs):
    result = run(["--json", "--model", fake_model, *inputs.values()])
    assert result.exit_code == 1
    out = records(result)
    assert len(out) == len(inputs)
    by_name = {k: out[str(v)] for k, v in inputs.items()}
    expected_errors = {
        "empty.wav": ("EmptyAudioError", "empty"),
        "text.wav": ("NotAudioError", "not an audio file"),
        "corrupt.wav": ("CorruptAudioError", "damaged"),
        "nan.wav": ("InvalidSamplesError", "NaN or infinite"),
        "inf.wav": ("InvalidSamplesError", "NaN or infinite"),
    }
    for name, (error_type, words) in expected_errors.items():
        assert by_name[name]["error_type"] == error_type, by_name[name]
        # The file is named once, in its own field: the message says only what is wrong.
        assert words in by_name[name]["error"] and name not in by_name[name]["error"], by_name[name]
    assert by_name["zeros.wav"]["label"] == "no_speech"
    assert (by_name["short.wav"]["label"], by_name["short.wav"]["reason"]) == ("no_speech", "too_short")
    for name in ("voice.wav", "rate_8k.wav", "rate_192k.flac", "six_channels.wav"):
        assert by_name[name]["label"] in ("female", "male"), by_name[name]
        assert by_name[name]["duration"] == pytest.approx(4.0, abs=0.01)
    assert f"{len(expected_errors)} of {len(inputs)} inputs failed" in result.stderr


def test_json_fields(fake_model, inputs):
    result = run(["--json", "--model", fake_model, inputs["voice.wav"]])
    assert result.exit_code == 0
    (record,) = records(result).values()
    for key in ("path", "label", "p_female", "confidence", "model", "speech_seconds", "segments", "timings_ms"):
        assert key in record
    assert record["model"] == "fake_gru"
    assert set(record["timings_ms"]) >= {"decode", "resample", "frames", "speech", "inference"}
    assert record["segments"][0]["start"] == 0.0


def test_table_csv_and_indonesian_labels(fake_model, inputs):
    table = run(["--model", fake_model, "--lang", "id", inputs["zeros.wav"], inputs["empty.wav"]])
    assert "Tidak ada suara" in table.stdout and "error:" in table.stdout and table.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(run(["--csv", "--model", fake_model, inputs["voice.wav"],
                                                   inputs["text.wav"]]).stdout)))
    assert rows[0]["label"] in ("female", "male") and float(rows[0]["p_female"]) >= 0
    assert rows[1]["label"] == "" and "not an audio file" in rows[1]["error"]
    voice_json = records(run(["--json", "--lang", "id", "--model", fake_model, inputs["voice.wav"]]))
    (record,) = voice_json.values()
    assert record["label_text"] in ("Perempuan", "Laki-laki")


def test_folders_are_searched_and_stdin_is_read(fake_model, inputs, tmp_path):
    folder = tmp_path / "batch" / "nested"
    folder.mkdir(parents=True)
    shutil.copy(inputs["voice.wav"], folder / "a.wav")
    shutil.copy(inputs["rate_8k.wav"], folder.parent / "b.WAV")
    (folder / "notes.txt").write_text("ignored: not an audio extension")
    out = records(run(["--json", "--model", fake_model, tmp_path / "batch"]))
    assert sorted(out) == sorted([str(folder / "a.wav"), str(folder.parent / "b.WAV")])
    piped = records(run(["--json", "--model", fake_model, "-"], input=inputs["voice.wav"].read_bytes()))
    assert piped["-"]["p_female"] == pytest.approx(out[str(folder / "a.wav")]["p_female"])


def test_jobs_give_the_same_results_in_order(fake_model, inputs):
    files = [inputs["voice.wav"], inputs["empty.wav"], inputs["rate_8k.wav"], inputs["zeros.wav"]] * 3
    one = run(["--json", "--model", fake_model, *files])
    two = run(["--json", "--jobs", "2", "--progress", "--model", fake_model, *files])
    strip = lambda r: [{k: v for k, v in json.loads(line).items() if k != "timings_ms"}  # noqa: E731
                       for line in r.stdout.splitlines()]
    assert strip(two) == strip(one)
    assert two.exit_code == one.exit_code == 1
    assert f"{len(files)}/{len(files)} files" in two.stderr  # the progress line


def test_unsupported_codec_names_the_extra(fake_model, tmp_path, monkeypatch):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to make an m4a file")
    wav, m4a = tmp_path / "v.wav", tmp_path / "v.m4a"
    sf.write(wav, voice(200, 3.0), RATE)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    assert records(run(["--json", "--model", fake_model, m4a]))[str(m4a)]["label"] != "no_speech"
    monkeypatch.setitem(sys.modules, "av", None)  # as on the base install, without [formats]
    record = records(run(["--json", "--model", fake_model, m4a]))[str(m4a)]
    assert record["error_type"] == "UnsupportedFormatError" and "gvd[formats]" in record["error"]


def test_model_problems_stop_before_any_input(tmp_path, inputs, models_env):
    missing = run(["--model", tmp_path / "nope.onnx", inputs["voice.wav"]])
    assert missing.exit_code == 1 and "no such model file" in missing.stderr
    bare = run(["--model", make_model(tmp_path / "bare.onnx", with_metadata=False), inputs["voice.wav"]])
    assert bare.exit_code == 1 and "not a gvd model" in bare.stderr
    unknown = run(["--model", "tcn", inputs["voice.wav"]])
    assert unknown.exit_code == 1 and "unknown model 'tcn'" in unknown.stderr
    make_model(models_env / "gru.onnx", seed=42)  # swapped behind the manifest's back
    swapped = run([inputs["voice.wav"]])
    assert swapped.exit_code == 1 and f"does not match {models_env / 'manifest.json'}" in swapped.stderr


def test_models_command(models_env):
    result = CliRunner().invoke(models_command, [])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("* gru") for line in lines) and any(line.startswith("  lstm") for line in lines)
    listed = [json.loads(line) for line in CliRunner().invoke(models_command, ["--json"]).stdout.splitlines()]
    assert [(m["name"], m["default"]) for m in listed] == [("gru", True), ("lstm", False)]


def test_models_command_without_models(tmp_path, monkeypatch):
    from edge import model

    monkeypatch.setattr(model, "candidate_dirs", lambda: [tmp_path])
    result = CliRunner().invoke(models_command, [])
    assert result.exit_code == 1 and "no shipped models" in result.stderr


@shipped_models
def test_gvd_models_and_predict_on_the_shipped_models():
    manifest = json.loads(SHIPPED_MANIFEST.read_text())
    out = subprocess.run([sys.executable, "-m", "edge", "models"], capture_output=True, text=True, check=True).stdout
    for entry in manifest["models"]:
        assert entry["name"] in out
    assert f"* {manifest['default']}" in out
    result = subprocess.run([sys.executable, "-m", "edge", "predict", "--json", str(REPO / "models" / "samples")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    labels = {Path(line["path"]).name: line["label"] for line in lines}
    assert labels["room_noise_16k.flac"] == "no_speech"
    # The flite slt clips are a known miss of the shipped models (tests/test_detector.py says so).
    assert labels["female_espeak_22k.flac"] == "female" and labels["male_16k.flac"] == "male"


# ------------------------------------------------------------------ one contract for every input

def test_too_short_is_no_speech_with_exit_zero(fake_model, inputs):
    result = run(["--json", "--model", fake_model, inputs["short.wav"]])
    assert result.exit_code == 0, result.stderr
    (record,) = records(result).values()
    assert (record["label"], record["reason"]) == ("no_speech", "too_short")
    assert (record["mixed"], record["warnings"]) == (False, [])
    table = run(["--model", fake_model, inputs["short.wav"]])
    assert table.exit_code == 0 and "no speech" in table.stdout and "too short" in table.stdout


def test_truncated_wav_is_classified_with_a_warning(fake_model, inputs, tmp_path):
    data = inputs["voice.wav"].read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 3])
    result = run(["--json", "--model", fake_model, cut])
    assert result.exit_code == 0
    (record,) = records(result).values()
    assert record["label"] in ("female", "male")
    assert record["warnings"] == ["truncated: the header promises 4.00 s, the file holds 1.33 s"]
    rows = list(csv.DictReader(io.StringIO(run(["--csv", "--model", fake_model, cut]).stdout)))
    assert rows[0]["warnings"].startswith("truncated") and rows[0]["mixed"] == "false" and rows[0]["reason"] == ""
    assert "truncated: the header promises" in run(["--model", fake_model, cut]).stdout


def test_json_and_csv_together_is_a_usage_error(fake_model, inputs):
    result = run(["--json", "--csv", "--model", fake_model, inputs["voice.wav"]])
    assert result.exit_code == 2 and "--json and --csv cannot be used together" in result.stderr
    assert result.stdout == ""


def test_csv_in_indonesian_translates_the_labels(fake_model, inputs):
    out = run(["--csv", "--lang", "id", "--model", fake_model, inputs["voice.wav"], inputs["zeros.wav"]]).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0].startswith("path,label,label_text,p_female")  # English field names
    assert rows[0]["label_text"] in ("Perempuan", "Laki-laki")
    assert (rows[1]["label"], rows[1]["label_text"], rows[1]["reason"]) == ("no_speech", "Tidak ada suara", "silence")


def test_jobs_are_capped_at_the_cpu_count(fake_model, inputs, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    started = []
    import edge.commands

    real = edge.commands._predict_records
    monkeypatch.setattr(edge.commands, "_predict_records",
                        lambda items, model, threads, threshold, jobs, detector: started.append(jobs)
                        or real(items, model, threads, threshold, 1, detector))
    result = run(["--json", "--jobs", "1000", "--model", fake_model, inputs["voice.wav"], inputs["zeros.wav"]])
    assert result.exit_code == 0 and started == [2]
    assert "note: --jobs 1000 capped at 2, the number of CPUs" in result.stderr


def test_stdin_errors_name_stdin_not_a_temporary_file(fake_model, inputs):
    result = run(["--json", "--model", fake_model, "-"], input=inputs["corrupt.wav"].read_bytes())
    record = records(result)["-"]
    assert result.exit_code == 1 and record["error_type"] == "CorruptAudioError"
    assert record["error"].startswith("damaged audio file") and "stdin" not in record["error"]
    assert "/tmp" not in record["error"] and "gvd-" not in record["error"]
    nan = records(run(["--json", "--model", fake_model, "-"], input=inputs["nan.wav"].read_bytes()))["-"]
    assert nan["error"] == "the audio contains NaN or infinite samples"


def test_messages_name_the_file_once_in_every_format(fake_model, inputs):
    table = run(["--model", fake_model, inputs["nan.wav"]]).stdout.splitlines()[1]
    assert table.count("nan.wav") == 1 and table.endswith("error: the audio contains NaN or infinite samples")
    rows = list(csv.DictReader(io.StringIO(run(["--csv", "--model", fake_model, inputs["empty.wav"]]).stdout)))
    assert rows[0]["error"] == "the file is empty (0 bytes)"


def test_model_directory_says_it_is_a_directory(tmp_path, inputs):
    for given in (tmp_path, f"{tmp_path}/"):
        result = run(["--model", given, inputs["voice.wav"]])
        assert result.exit_code == 1 and "is a folder, not a model file" in result.stderr


def test_channels_first_arrays_through_the_api(fake_model):
    from edge.detector import Detector

    detector = Detector(fake_model)
    stereo = np.stack([voice(210, 4.0), voice(210, 4.0)], axis=1)
    assert detector.predict(stereo.T.copy(), RATE).p_female == pytest.approx(detector.predict(stereo, RATE).p_female)


def _nobody(code: str, *args) -> subprocess.CompletedProcess:
    """gvd as an unprivileged user when the tests run as root (root reads any file whatever its mode)."""
    import os

    command = [sys.executable, "-c", code, *map(str, args)]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def shared_folder(fake_model):
    """A folder outside pytest's private tree that an unprivileged user can enter, with a model in it."""
    import os
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="gvd-test-"))
    os.chmod(folder, 0o755)
    shutil.copy(fake_model, folder / "model.onnx")
    yield folder
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_files_and_folders_are_reported_not_skipped(shared_folder, inputs):
    import os

    batch = shared_folder / "batch"
    (batch / "locked").mkdir(parents=True)
    os.chmod(batch, 0o755)
    shutil.copy(inputs["voice.wav"], batch / "ok.wav")
    shutil.copy(inputs["voice.wav"], batch / "secret.wav")
    shutil.copy(inputs["voice.wav"], batch / "locked" / "hidden.wav")
    for path in (batch / "ok.wav", batch / "secret.wav"):
        os.chmod(path, 0o644)
    os.chmod(batch / "secret.wav", 0)
    os.chmod(batch / "locked", 0)
    out = _nobody("from edge.cli import main; main()", "predict", "--json", "--model", shared_folder / "model.onnx",
                  batch)
    lines = {r["path"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert out.returncode == 1, out.stderr
    assert lines[str(batch / "locked")]["error"] == "permission denied (the folder cannot be searched)"
    assert lines[str(batch / "secret.wav")] == {"path": str(batch / "secret.wav"), "error_type": "UnreadableFileError",
                                                "error": "permission denied (the file cannot be read)"}
    assert lines[str(batch / "ok.wav")]["label"] in ("female", "male")
    assert "2 of 3 inputs failed" in out.stderr
