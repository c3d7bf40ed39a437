"""Non-speech training sources: what is taken, how pieces group, and how held-out sources are reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from train.nonspeech import (
    DEBIAN_PACKAGES,
    EXCLUDED_PACKAGES,
    HELD_OUT_PACKAGES,
    SPOKEN_FILE,
    NonspeechConfig,
    Source,
    prepare,
    source_of,
)
from train.reports import heldout_nonspeech, loco_summary

ROOT = Path(__file__).resolve().parents[1]


def test_pieces_of_one_recording_are_one_source():
    assert source_of("music_on_hold_macroform-cold_day_3") == "music_on_hold_macroform-cold_day"
    assert source_of("short_noises_friction1") == "short_noises_friction"
    assert source_of("demo_tap") == "demo_tap"
    assert source_of("42") == "42"


def test_spoken_descriptions_are_never_non_speech():
    for stem in ("hen_desc", "hen_desc_fr", "cow_desc_pt_BR"):
        assert SPOKEN_FILE.search(stem), stem
    for stem in ("hen", "description", "desc_tone"):
        assert not SPOKEN_FILE.search(stem), stem


def test_makefile_installs_exactly_the_packages_training_reads():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(r"NONSPEECH_PACKAGES := (.*?)\n\n", makefile, re.S)
    assert block, "NONSPEECH_PACKAGES not found in the Makefile"
    listed = block.group(1).replace("\\\n", " ").split()
    assert sorted(listed) == sorted(DEBIAN_PACKAGES)
    assert not set(listed) & set(EXCLUDED_PACKAGES)
    assert not set(listed) & set(HELD_OUT_PACKAGES)


def test_held_out_nonspeech_adds_up_over_folds():
    folds = {
        "a": {"balanced_accuracy": 0.9, "heldout_nonspeech": {"clips": 8, "rejected": 6, "given_gender": ["x", "y"]}},
        "b": {"balanced_accuracy": 0.8, "heldout_nonspeech": {"clips": 2, "rejected": 2, "given_gender": []}},
        "c": {"balanced_accuracy": 0.7},
    }
    total = heldout_nonspeech(folds)
    assert total == {"clips": 10, "rejected": 8, "rejected_share": 0.8, "given_gender": ["x", "y"]}
    assert loco_summary(folds)["loco_nonspeech"] == total
    assert heldout_nonspeech({"c": folds["c"]}) is None


def test_missing_non_speech_packages_are_named_not_skipped_in_silence(tmp_path):
    sources = {"gone": Source(str(tmp_path / "not-installed"), "some-sounds-package")}
    with pytest.warns(UserWarning, match=r"not installed: some-sounds-package; .*apt-get install some-sounds-package"):
        recordings = prepare(tmp_path / "cache", sources, NonspeechConfig(seconds=0.5, synthetic=2))
    assert {r.corpus for r in recordings} == {"nonspeech_synthetic"}
