"""The shared file helpers: hashing, atomic writes, finding audio files."""

from __future__ import annotations

import hashlib
import os

import pytest

from edge.files import atomic_write, atomic_write_text, list_audio_files, sha256_file


def test_sha256_of_a_file_larger_than_one_block(tmp_path):
    data = os.urandom((1 << 20) + 12345)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def half_then_fail(handle):
        handle.write(b"ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_audio_files_are_found_recursively_and_sorted(tmp_path):
    for name in ("b/2.FLAC", "b/1.wav", "a.mp3", "notes.txt", "c/d/e.opus", "image.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.wav").mkdir()  # a folder with an audio suffix is not a file
    found = [p.relative_to(tmp_path).as_posix() for p in list_audio_files(tmp_path)]
    assert found == ["a.mp3", "b/1.wav", "b/2.FLAC", "c/d/e.opus"]
    assert list_audio_files(tmp_path, extensions={".wav"}) == [tmp_path / "b" / "1.wav"]
    assert list_audio_files(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]  # a file is its own list


def test_a_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_audio_files(tmp_path / "nowhere")


def test_an_unreadable_sub_folder_is_an_error_not_a_silent_skip(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "ok.wav").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # works as root too, where chmod would not lock anything
    with pytest.raises(PermissionError, match="locked"):
        list_audio_files(tmp_path)
