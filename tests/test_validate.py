"""`gvd data validate`: per-file report, unusable files fail the run, duplicates across formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from edge.audio import resample
from train.validate import data, find_duplicates, fingerprint, similarity, validate

SR = 16000


def speechlike(rng, seconds: float, f0: float) -> np.ndarray:
    """Harmonic syllables with a wandering pitch plus fricative-like noise bursts (content up to 8 kHz)."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    vowels = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = (np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)) > 0).astype(float)
    hiss = np.diff(rng.standard_normal(n + 1)) * (1 - syllables) * (np.sin(2 * np.pi * 1.3 * t) > 0.5)
    return (0.08 * vowels * syllables + 0.05 * hiss + 0.001 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture
def corpus(tmp_path, rng):
    root = tmp_path / "corpus"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    one = speechlike(rng, 6.0, 120)
    two = speechlike(rng, 6.0, 210)
    sf.write(root / "a" / "one.wav", one, SR, subtype="PCM_16")
    # The same recording as lossy Ogg Vorbis at 48 kHz, 6 dB quieter, under another name: a duplicate.
    sf.write(root / "b" / "copy_of_one.ogg", resample(one * 0.5, SR, 48000), 48000, format="OGG", subtype="VORBIS")
    sf.write(root / "a" / "two.flac", two, SR, subtype="PCM_16")
    # Telephone band stored at 48 kHz: nothing above 4 kHz although the rate allows 24 kHz.
    narrow = resample(resample(speechlike(rng, 5.0, 150), SR, 8000), 8000, 48000)
    sf.write(root / "b" / "phone.wav", narrow, 48000, subtype="PCM_16")
    loud = np.clip(speechlike(rng, 4.0, 180) * 20, -1, 1)
    sf.write(root / "b" / "clipped.wav", loud, SR, subtype="PCM_16")
    (root / "b" / "notes.wav").write_text("not audio\n" * 100)
    (root / "b" / "empty.mp3").write_bytes(b"")
    sf.write(root / "b" / "zeros.wav", np.zeros(SR * 2, np.float32), SR, subtype="PCM_16")
    (root / "readme.txt").write_text("ignored: not an audio extension")
    return root


def test_report_and_exit_status(corpus):
    result = CliRunner().invoke(data, ["validate", str(corpus), "--json", "--no-progress", "-j", "1"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    files = {f["path"]: f for f in report["files"]}
    assert set(files) == {"a/one.wav", "a/two.flac", "b/copy_of_one.ogg", "b/phone.wav", "b/clipped.wav",
                          "b/notes.wav", "b/empty.mp3", "b/zeros.wav"}
    unusable = {name for name, f in files.items() if not f["ok"]}
    assert unusable == {"b/notes.wav", "b/empty.mp3", "b/zeros.wav"}
    assert "not an audio file" in files["b/notes.wav"]["error"]
    assert "empty" in files["b/empty.mp3"]["error"]
    assert "silence" in files["b/zeros.wav"]["error"]

    one, copy = files["a/one.wav"], files["b/copy_of_one.ogg"]
    assert (one["codec"], one["sample_rate"], one["channels"]) == ("PCM_16", 16000, 1)
    assert (copy["codec"], copy["sample_rate"]) == ("VORBIS", 48000)
    assert one["duration"] == pytest.approx(6.0)
    assert one["energy_above_8k"] is None  # a 16 kHz file cannot say anything about 8 kHz
    assert [d["a"] for d in report["duplicates"]] == ["a/one.wav"]
    assert report["duplicates"][0]["b"] == "b/copy_of_one.ogg"
    assert not report["duplicates"][0]["identical"]
    assert "duplicate" in one["flags"] and "duplicate" in copy["flags"]
    assert "duplicate" not in files["a/two.flac"]["flags"]

    assert "band-limited<4kHz" in files["b/phone.wav"]["flags"]
    assert files["b/phone.wav"]["energy_above_4k"] < 1e-5
    assert not any(f.startswith("band-limited") for f in one["flags"] + files["a/two.flac"]["flags"])
    assert "band-limited<8kHz" in copy["flags"]  # made from 16 kHz audio, stored at 48 kHz
    assert files["b/clipped.wav"]["clipping_ratio"] > 0.01 and "clipping" in files["b/clipped.wav"]["flags"]
    assert one["clipping_ratio"] == 0
    assert 0 <= one["silence_ratio"] < 0.6 and one["speech_seconds"] > 2
    assert one["snr_db"] > 20
    assert report["summary"]["unusable"] == 3 and report["summary"]["duplicate_pairs"] == 1


def test_table_output_names_reasons(corpus):
    result = CliRunner().invoke(data, ["validate", str(corpus), "--no-progress", "-j", "2"])
    assert result.exit_code == 1
    assert "UNUSABLE" in result.stdout and "a/one.wav  ==  b/copy_of_one.ogg" in result.stdout
    assert "b/notes.wav:" in result.stderr


def test_clean_folder_exits_zero(corpus):
    for bad in ("notes.wav", "empty.mp3", "zeros.wav"):
        (corpus / "b" / bad).unlink()
    result = CliRunner().invoke(data, ["validate", str(corpus), "--summary", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "usable: 5" in result.stdout and "unusable: 0" in result.stdout


def test_no_audio_is_an_error(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    result = CliRunner().invoke(data, ["validate", str(tmp_path), "--no-progress"])
    assert result.exit_code != 0 and "no audio files" in result.output


def test_fingerprint_separates_different_speech(rng):
    a, b = speechlike(rng, 5.0, 120), speechlike(rng, 5.0, 120)
    fa, fb = fingerprint(a), fingerprint(b)
    assert similarity(fa, fa)[0] == pytest.approx(1.0)
    assert similarity(fa, fb)[0] < 0.5
    shifted = np.concatenate([np.zeros(640, np.float32), a])[: a.size]  # 40 ms codec delay
    score, lag = similarity(fa, fingerprint(shifted))
    assert score > 0.9 and lag == 2
    dups = find_duplicates(["a", "b", "c"], [fa, fb, fingerprint(shifted)], [5.0, 5.0, 5.0])
    assert [(d.a, d.b) for d in dups] == [("a", "c")]


@pytest.mark.shared
def test_indonesian_duplicate_and_band_limits(shared_data):
    reports, duplicates = validate(shared_data / "indonesian", jobs=2, progress=False)
    assert all(r.ok for r in reports)
    assert [(d.a, d.b) for d in duplicates] == [("cewe/f036.m4a", "cewe/f037.wav")]
    limited = {r.path for r in reports if any(f.startswith("band-limited") for f in r.flags)}
    opus = {r.path for r in reports if r.codec == "opus"}
    assert opus <= limited  # every WhatsApp voice note
    assert not any(r.codec == "aac" for r in reports if r.path in limited)


@pytest.mark.shared
def test_ravdess_exact_duplicate(shared_data):
    _, duplicates = validate(shared_data / "ravdess" / "Actor_07", jobs=1, progress=False)
    assert [(d.a, d.b, d.identical) for d in duplicates] == [
        ("03-01-03-01-02-01-07.flac", "03-01-03-01-02-02-07.flac", True)]


# ------------------------------------------------------------------ the input contract

def test_short_and_truncated_files_are_flagged(tmp_path, rng):
    root = tmp_path / "set"
    root.mkdir()
    sf.write(root / "tap.wav", speechlike(rng, 0.1, 200), SR, subtype="PCM_16")
    sf.write(root / "whole.wav", speechlike(rng, 4.0, 200), SR, subtype="PCM_16")
    data_ = (root / "whole.wav").read_bytes()
    (root / "cut.wav").write_bytes(data_[: len(data_) // 3])
    result = CliRunner().invoke(data, ["validate", str(root), "--json", "--no-progress", "-j", "1"])
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert files["tap.wav"]["ok"] and "too-short" in files["tap.wav"]["flags"]
    assert files["cut.wav"]["ok"] and "truncated" in files["cut.wav"]["flags"]
    assert files["cut.wav"]["warnings"] == ["truncated: the header promises 4.00 s, the file holds 1.33 s"]
    assert files["cut.wav"]["duration"] == pytest.approx(4 / 3, abs=0.01)
    assert "truncated" not in files["whole.wav"]["flags"] and "too-short" not in files["whole.wav"]["flags"]
    table = CliRunner().invoke(data, ["validate", str(root), "--no-progress", "-j", "1"]).stdout
    assert "too-short" in table and "truncated" in table


def test_errors_name_the_file_once(corpus):
    result = CliRunner().invoke(data, ["validate", str(corpus), "--json", "--no-progress", "-j", "1"])
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert files["b/notes.wav"]["error"].startswith("not an audio file")
    assert files["b/empty.mp3"]["error"] == "the file is empty (0 bytes)"
    text = CliRunner().invoke(data, ["validate", str(corpus), "--no-progress", "-j", "1"])
    lines = [line for line in text.stderr.splitlines() if "notes.wav" in line]
    assert lines == ["  b/notes.wav: " + files["b/notes.wav"]["error"]]


def test_jobs_are_capped_at_the_cpu_count(corpus, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    result = CliRunner().invoke(data, ["validate", str(corpus), "--summary", "--no-progress", "-j", "500"])
    assert "note: --jobs 500 capped at 1, the number of CPUs" in result.stderr


def test_unreadable_folder_is_reported(tmp_path, rng):
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="gvd-test-"))  # pytest's own folders are private to root
    try:
        os.chmod(root, 0o755)
        (root / "locked").mkdir()
        sf.write(root / "ok.wav", speechlike(rng, 3.0, 200), SR, subtype="PCM_16")
        sf.write(root / "locked" / "hidden.wav", speechlike(rng, 3.0, 200), SR, subtype="PCM_16")
        os.chmod(root / "ok.wav", 0o644)
        os.chmod(root / "locked", 0)
        command = [sys.executable, "-c", "from train.validate import data; data()", "validate", "--json",
                   "--no-progress", str(root)]
        if os.geteuid() == 0:  # root lists any folder whatever its mode: run as nobody
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 1, out.stderr
        files = {f["path"]: f for f in json.loads(out.stdout)["files"]}
        assert files["locked"] == {**files["locked"], "ok": False,
                                   "error": "permission denied (the folder cannot be searched)"}
        assert files["ok.wav"]["ok"]
    finally:
        os.chmod(root / "locked", 0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_long_file_is_validated_in_bounded_memory(tmp_path, rng):
    """Peak memory does not grow with the length of the file: the old whole-file analysis grew by more
    than a gigabyte on a quarter of an hour at 44.1 kHz.

    Two lengths, each in a fresh process: the longer one adds 15 minutes, which held whole would be
    58 MB more at 16 kHz (float32) and 159 MB at 44.1 kHz. Comparing two lengths leaves out what does
    not depend on the length (first-use buffers, library pages), which moves by a few tens of MB from
    one process to another (one CI run measured 64 MB where runs before and after measured 42-48).
    """
    import subprocess
    import sys
    from pathlib import Path

    rate = 44100
    chunk = resample(speechlike(rng, 30.0, 180), SR, rate)
    probe = (
        "import sys, json\n"
        "from train.validate import analyse_file\n"
        "from pathlib import Path\n"
        "def hwm():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "analyse_file(Path(sys.argv[1]).with_name('warm.wav'), Path(sys.argv[1]).parent)\n"
        "before = hwm()\n"
        "report, fp, digest = analyse_file(Path(sys.argv[1]), Path(sys.argv[1]).parent)\n"
        "print(json.dumps({'grown_kb': hwm() - before, 'ok': report.ok, 'duration': report.duration,"
        " 'speech': report.speech_seconds}))\n"
    )
    sf.write(tmp_path / "warm.wav", speechlike(rng, 3.0, 180), SR)  # imports and first-call costs
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"}
    grown = {}
    for seconds in (300, 1200):
        path = tmp_path / f"long{seconds}.wav"
        with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as handle:
            for _ in range(seconds // 30):
                handle.write(chunk)
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, env=env,
                             check=True, timeout=300)
        result = json.loads(out.stdout)
        assert result["ok"] and result["duration"] == pytest.approx(seconds) and result["speech"] > seconds / 3
        grown[seconds] = result["grown_kb"]
        path.unlink()
    assert grown[1200] - grown[300] < 30_000, f"peak RSS grew by {grown[300] / 1000:.0f} MB for 5 minutes, " \
                                              f"{grown[1200] / 1000:.0f} MB for 20"
    assert grown[1200] < 100_000, f"peak RSS grew by {grown[1200] / 1000:.0f} MB"
