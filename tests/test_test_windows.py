"""Training leaves its labelled test windows next to training.json; export reads only that file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.labelled_windows import (
    TEST_WINDOWS_NAME,
    LabelledWindows,
    WindowsFileError,
    read_labelled_windows,
    write_labelled_windows,
)
from edge.settings import DEFAULT_SETTINGS

from signals import voice

N = DEFAULT_SETTINGS.n_features


def sample(rng: np.random.Generator) -> LabelledWindows:
    windows = [rng.standard_normal((n, N)).astype(np.float32) for n in (94, 94, 40, 94, 17)]
    return LabelledWindows.from_windows(windows, [1, 1, 1, 0, 0], [3.0, 2.5, 1.2, 3.0, 0.6],
                                        ["ravdess/a.wav", "ravdess/a.wav", "urdu/b.wav", "urdu/c.wav", "urdu/c.wav"],
                                        ["ravdess", "ravdess", "urdu", "urdu", "urdu"], N)


def test_round_trip(tmp_path, rng):
    original = sample(rng)
    path = write_labelled_windows(tmp_path / TEST_WINDOWS_NAME, original)
    again = read_labelled_windows(path)
    assert len(again) == 5 and again.n_features == N
    for a, b in zip(original.windows(), again.windows(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.labels.tolist() == [1, 1, 1, 0, 0] and again.recordings.tolist()[2] == "urdu/b.wav"
    assert list(np.load(path, allow_pickle=False).files)  # readable without pickles


def test_inconsistent_arrays_are_refused(rng):
    good = sample(rng)
    with pytest.raises(WindowsFileError, match="labels do not have one entry per window"):
        LabelledWindows(good.features, good.lengths, good.labels[:-1], good.speech_seconds, good.recordings,
                        good.corpora)
    with pytest.raises(WindowsFileError, match="frames the lengths add up to"):
        LabelledWindows(good.features[:-1], good.lengths, good.labels, good.speech_seconds, good.recordings,
                        good.corpora)
    with pytest.raises(WindowsFileError, match="label of 0 or 1"):
        LabelledWindows(good.features, good.lengths, good.labels + 1, good.speech_seconds, good.recordings,
                        good.corpora)


def test_other_files_are_refused_with_the_reason(tmp_path):
    np.savez(tmp_path / "old.npz", features_0=np.zeros((3, N), np.float32))
    with pytest.raises(WindowsFileError, match="not a labelled windows file"):
        read_labelled_windows(tmp_path / "old.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(WindowsFileError, match="unreadable"):
        read_labelled_windows(tmp_path / "junk.npz")


def test_export_reads_them_as_labelled_clips(tmp_path, rng):
    from export.parity import clip_accuracy, load_windows

    path = write_labelled_windows(tmp_path / TEST_WINDOWS_NAME, sample(rng))
    windows = load_windows(path, N)
    assert len(windows) == 5 and windows.labels.tolist() == [1, 1, 1, 0, 0]
    assert {clip: idx for clip, idx in windows.clip_groups().items()} == {
        "ravdess/a.wav": [0, 1], "urdu/b.wav": [2], "urdu/c.wav": [3, 4]}
    perfect = np.array([0.9, 0.8, 0.7, 0.1, 0.2])
    assert clip_accuracy(perfect, windows, 0.5) == 1.0
    from export.errors import ExportError

    with pytest.raises(ExportError, match=str(N + 1)):
        load_windows(path, N + 1)


def test_training_writes_the_clean_windows_of_the_test_recordings(tmp_path, rng):
    pytest.importorskip("scipy")
    from train.data import Recording
    from train.dataset import Windows
    from train.test_windows import write_test_windows

    recordings = [Recording(Path(f"/x/{name}.wav"), label, name, "corpus") for name, label in
                  (("a", "female"), ("b", "male"), ("c", "male"))]
    windows = Windows()
    for rec, variant, frames in ((0, 0, 94), (0, 1, 94), (1, 0, 50), (2, 0, 94), (2, 0, 30)):
        windows.features.append(rng.standard_normal((frames, N)).astype(np.float32))
        windows.speech.append(frames / 31.25)
        windows.recording.append(rec)
        windows.variant.append(variant)
    path = write_test_windows(tmp_path / "gru", windows, recordings, [0, 2])
    assert path == tmp_path / "gru" / TEST_WINDOWS_NAME
    written = read_labelled_windows(path)
    assert written.recordings.tolist() == ["corpus/a.wav", "corpus/c.wav", "corpus/c.wav"]  # no augmented copy
    assert written.labels.tolist() == [1, 0, 0] and written.lengths.tolist() == [94, 94, 30]
    np.testing.assert_array_equal(written.windows()[2], windows.features[4])


def test_export_finds_one_shared_file_or_refuses(tmp_path, rng):
    from edge.errors import GvdError
    from export.cli import find_test_windows

    for cell in ("gru", "lstm"):
        (tmp_path / cell).mkdir()
        (tmp_path / cell / "training.json").write_text("{}")
    assert find_test_windows(None, tmp_path) is None
    for cell in ("gru", "lstm"):
        write_labelled_windows(tmp_path / cell / TEST_WINDOWS_NAME, sample(np.random.default_rng(0)))
    assert find_test_windows(None, tmp_path) == tmp_path / "gru" / TEST_WINDOWS_NAME
    assert find_test_windows(tmp_path / "lstm", None) == tmp_path / "lstm" / TEST_WINDOWS_NAME
    write_labelled_windows(tmp_path / "lstm" / TEST_WINDOWS_NAME, sample(np.random.default_rng(1)))
    with pytest.raises(GvdError, match="do not share one test_windows.npz"):
        find_test_windows(None, tmp_path)


@pytest.mark.slow
def test_a_finished_run_can_be_given_its_test_windows(tmp_path):
    """train.test_windows rebuilds exactly the test recordings of a run, with their labels."""
    soundfile = pytest.importorskip("soundfile")
    pytest.importorskip("train.train")
    import click

    from train.config import apply_overrides, preset
    from train.data import speaker_split
    from train.test_windows import rebuild
    from train.train import RunOptions, prepare

    corpus = tmp_path / "tiny"
    for label, base in (("female", 210.0), ("male", 110.0)):
        (corpus / label).mkdir(parents=True)
        for i in range(8):  # a distinct pitch per file
            soundfile.write(corpus / label / f"{label}{i}.wav", voice(base + 7 * i, 2.0, seed=i), 16000)
    config = apply_overrides(preset("default"), {"split": [0.5, 0.25, 0.25], "augment": {"variants": 0},
                                                 "workers": 1, "nonspeech_fraction": 0.0})
    cache = tmp_path / "cache"
    prepared = prepare(config, RunOptions(data=[str(corpus)], cache_dir=str(cache), progress=False))
    train_dir = tmp_path / "run"
    (train_dir / "gru").mkdir(parents=True)
    (train_dir / "gru" / "training.json").write_text(json.dumps(
        {"train_config": config.to_dict(), "data_manifest_sha256": prepared.manifest_sha256}))

    rebuild([str(corpus)], train_dir, cache_dir=str(cache))
    written = read_labelled_windows(train_dir / "gru" / TEST_WINDOWS_NAME)
    expected = speaker_split(prepared.recordings, config.split, seed=config.seed)["test"]
    assert sorted(set(written.recordings.tolist())) == sorted(r.key for r in expected)
    truth = {r.key: r.y for r in expected}
    assert [truth[key] for key in written.recordings.tolist()] == written.labels.tolist()
    assert written.speech_seconds.min() > 0

    (train_dir / "gru" / "training.json").write_text(json.dumps(
        {"train_config": config.to_dict(), "data_manifest_sha256": "0" * 64}))
    with pytest.raises(click.ClickException, match="manifest hash"):
        rebuild([str(corpus)], train_dir, cache_dir=str(cache))


@pytest.mark.slow
def test_export_judges_accuracy_on_the_test_windows_training_wrote(tmp_path, rng):
    pytest.importorskip("keras")
    from click.testing import CliRunner

    from export.cli import export

    from test_export import make_training_dir

    source = make_training_dir(tmp_path / "train", "gru")
    labelled = sample(rng)
    write_labelled_windows(source / TEST_WINDOWS_NAME, labelled)
    result = CliRunner().invoke(export, [str(source), "--out", str(tmp_path / "gru.onnx"), "--json", "--no-int8"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)["models"][0]
    assert TEST_WINDOWS_NAME in model["parity"]["source"]
    assert model["accuracy"]["clips"] == len(set(labelled.recordings.tolist())) + 8  # + training's parity sample
    assert TEST_WINDOWS_NAME in model["accuracy"]["source"]
