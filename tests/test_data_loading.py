"""Corpus loading: label folders, speakers.csv, the three shared adapters, duplicate handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train.data import (
    DataError,
    dedupe,
    load_corpora,
    load_folder,
    load_path,
    load_ravdess,
    load_urdu,
    manifest_sha256,
    merge_groups,
)


def _tone(path: Path, freq: float = 150.0, seconds: float = 0.5, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    y = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), 16000)
    return path


def test_label_folders_with_aliases_and_speakers_csv(tmp_path):
    _tone(tmp_path / "cewe" / "a.wav", seed=1)
    _tone(tmp_path / "cewe" / "sub" / "b.wav", seed=2)
    _tone(tmp_path / "cowo" / "c.wav", seed=3)
    (tmp_path / "speakers.csv").write_text("file,label,speaker\ncewe/a.wav,female,s1\ncewe/sub/b.wav,female,s1\n")
    recs = {r.path.name: r for r in load_folder(tmp_path, corpus="mine")}
    assert {n: r.label for n, r in recs.items()} == {"a.wav": "female", "b.wav": "female", "c.wav": "male"}
    assert recs["a.wav"].speaker == recs["b.wav"].speaker == "s1"
    # Not in speakers.csv: its own speaker, so it can never share a speaker with anyone else.
    assert recs["c.wav"].speaker not in {"s1"} and recs["c.wav"].corpus == "mine"
    assert recs["a.wav"].y == 1 and recs["c.wav"].y == 0


def test_speakers_csv_contradicting_the_folder_is_an_error(tmp_path):
    _tone(tmp_path / "female" / "a.wav")
    (tmp_path / "speakers.csv").write_text("file,label,speaker\nfemale/a.wav,male,s1\n")
    with pytest.raises(DataError, match="labelled male"):
        load_folder(tmp_path)


def test_speakers_csv_needs_its_columns(tmp_path):
    _tone(tmp_path / "female" / "a.wav")
    (tmp_path / "speakers.csv").write_text("name,speaker\nfemale/a.wav,s1\n")
    with pytest.raises(DataError, match="missing column"):
        load_folder(tmp_path)


def test_folder_without_label_folders_is_an_error(tmp_path):
    _tone(tmp_path / "voices" / "a.wav")
    with pytest.raises(DataError, match="no audio under label folders"):
        load_folder(tmp_path)


def test_ravdess_adapter_reads_actor_parity(tmp_path):
    _tone(tmp_path / "Actor_01" / "03-01-01-01-01-01-01.flac")
    _tone(tmp_path / "Actor_12" / "03-01-05-01-02-01-12.flac", seed=4)
    recs = {r.speaker: r for r in load_ravdess(tmp_path)}
    assert recs["actor01"].label == "male" and recs["actor12"].label == "female"
    _tone(tmp_path / "Actor_12" / "oops.flac")
    with pytest.raises(DataError, match="not a RAVDESS name"):
        load_ravdess(tmp_path)


def test_urdu_adapter_reads_prefix_and_speaker(tmp_path):
    _tone(tmp_path / "Happy" / "SM1_F10_H010.flac")
    _tone(tmp_path / "Sad" / "SF3_F2_S02.flac", seed=5)
    _tone(tmp_path / "Sad" / "SM1_F3_S03.flac", seed=6)
    recs = load_urdu(tmp_path)
    assert sorted((r.speaker, r.label) for r in recs) == [("SF3", "female"), ("SM1", "male"), ("SM1", "male")]


def test_shared_root_layout_expands_to_its_corpora(tmp_path):
    _tone(tmp_path / "ravdess" / "Actor_02" / "03-01-01-01-01-01-02.flac")
    _tone(tmp_path / "urdu" / "Angry" / "SM2_F1_A01.flac", seed=7)
    recs = load_path(tmp_path)
    assert sorted(r.corpus for r in recs) == ["ravdess", "urdu"]


def test_exact_duplicates_are_dropped_by_content_hash(tmp_path):
    a = _tone(tmp_path / "female" / "a.wav", seed=1)
    (tmp_path / "female" / "copy_of_a.wav").write_bytes(a.read_bytes())
    _tone(tmp_path / "male" / "b.wav", seed=2)
    kept, dropped = dedupe(load_folder(tmp_path))
    assert len(kept) == 2 and len(dropped) == 1
    assert {dropped[0][0].path.name, dropped[0][1].path.name} == {"a.wav", "copy_of_a.wav"}
    assert all(len(r.sha256) == 64 for r in kept)
    # The manifest hash depends on the content, not on the file names.
    assert manifest_sha256(kept) == manifest_sha256(list(reversed(kept)))


def test_same_audio_pairs_end_up_with_one_speaker(tmp_path):
    _tone(tmp_path / "female" / "a.wav", seed=1)
    _tone(tmp_path / "female" / "b.wav", seed=2)
    recs, _ = load_corpora([tmp_path])
    merged = merge_groups(recs, [(recs[0].key, recs[1].key)])
    assert merged[0].group == merged[1].group


@pytest.mark.shared
def test_shared_corpora_labels_speakers_and_duplicates(shared_data):
    recs, dropped = load_corpora([shared_data])
    by_corpus = {c: [r for r in recs if r.corpus == c] for c in ("indonesian", "ravdess", "urdu")}
    assert len(by_corpus["indonesian"]) == 102
    assert len(by_corpus["urdu"]) == 400
    # Byte-identical files are dropped: the README's pair in RAVDESS Actor_07, BAVED speaker 17's
    # recording stored twice and the 20 recordings BAVED keeps under two speaker ids, and so on.
    assert ("Actor_07", "Actor_07") in [(a.path.parent.name, b.path.parent.name) for a, b in dropped]
    assert all(a.sha256 == b.sha256 and a.corpus == b.corpus for a, b in dropped)
    assert len({r.speaker for r in by_corpus["ravdess"]}) == 24
    assert {r.label for r in by_corpus["ravdess"] if r.speaker == "actor07"} == {"male"}
    urdu_speakers = {r.speaker for r in by_corpus["urdu"]}
    assert sum(s.startswith("SF") for s in urdu_speakers) == 11 and sum(s.startswith("SM") for s in urdu_speakers) == 18
    indo = {r.path.name: r for r in by_corpus["indonesian"]}
    # The recording stored twice (m4a and wav) is grouped under one speaker by speakers.csv.
    assert indo["f036.m4a"].speaker == indo["f037.wav"].speaker
    assert indo["f001.m4a"].label == "female" and indo["m001.opus"].label == "male"
