"""Detector: model loading and verification, predictions on arrays and files, bounded-memory windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from edge import Detector, ModelError
from edge import model as edge_model
from edge.errors import InvalidSamplesError
from edge.pipeline import STAGES, window_inputs

from model_fixtures import SHIPPED_MANIFEST, make_model, sha256, shipped_models, test_metadata, voice

RATE = 16000
N_FEATURES = test_metadata().feature_settings.n_features


def test_prediction_fields_and_timeline(fake_detector):
    result = fake_detector.predict(voice(200, 7.0), RATE)
    assert result.label in ("female", "male")
    assert 0.0 <= result.p_female <= 1.0
    assert result.confidence == pytest.approx(max(result.p_female, 1 - result.p_female))
    assert 0 < result.speech_seconds <= result.duration == pytest.approx(7.0)
    starts = [w.start for w in window_inputs(voice(200, 7.0), fake_detector.settings)]
    assert [s.start for s in result.segments] == starts == [0.0, 1.0, 2.0, 3.0, 3.98]  # 349 frames
    assert set(result.timings_ms) == {*STAGES, "total"}
    assert result.timings_ms["total"] >= result.timings_ms["frames"] > 0
    assert (result.reason, result.mixed, result.warnings) == (None, False, [])
    assert all(s.p_speech is None for s in result.segments)  # the model has no p_speech output
    data = result.to_dict()
    json.dumps(data)  # serialisable as is
    assert data["segments"][0].keys() == {"start", "end", "p_female", "p_speech", "speech_seconds"}
    assert {"reason", "mixed", "warnings"} <= data.keys()


def test_same_windows_and_probabilities_as_the_training_pipeline(fake_detector):
    y = voice(150, 6.3)
    expected = window_inputs(y, fake_detector.settings)
    probs, p_speech = fake_detector.infer([w.features for w in expected if w.features is not None])
    assert np.isnan(p_speech).all()
    result = fake_detector.predict(y, RATE)
    got = [s.p_female for s in result.segments if s.p_female is not None]
    assert [(s.start, s.end) for s in result.segments] == [(w.start, w.end) for w in expected]
    np.testing.assert_allclose(got, probs, rtol=1e-6)


def test_file_decoded_in_blocks_equals_the_array(fake_detector, tmp_path):
    # 25 s: three 10 s decoder blocks, so windows straddle block boundaries in the rolling buffer.
    y = np.concatenate([voice(220, 12.0, seed=1), np.zeros(RATE, np.float32), voice(110, 12.0, seed=2)])
    path = tmp_path / "long.wav"
    sf.write(path, y, RATE, subtype="FLOAT")
    from_file = fake_detector.predict(path)
    from_array = fake_detector.predict(y, RATE)
    assert from_file.path == str(path)
    assert [(s.start, s.end) for s in from_file.segments] == [(s.start, s.end) for s in from_array.segments]
    np.testing.assert_allclose([s.p_female or -1 for s in from_file.segments],
                               [s.p_female or -1 for s in from_array.segments], rtol=1e-6)
    assert from_file.p_female == pytest.approx(from_array.p_female)


def test_batched_inference_equals_one_window_at_a_time(fake_detector, rng):
    feats = [rng.normal(size=(n, N_FEATURES)).astype(np.float32) for n in (40, 150, 40, 17, 150, 150)]
    batched, _ = fake_detector.infer(feats)
    single = [fake_detector.infer([f])[0][0] for f in feats]
    np.testing.assert_allclose(batched, single, rtol=1e-5)


def test_speech_output_is_read_and_batched(speech_model, rng):
    detector = Detector(speech_model)
    assert detector.detects_speech and detector.metadata.has_speech_output
    feats = [rng.normal(size=(n, N_FEATURES)).astype(np.float32) for n in (40, 150, 40)]
    p_female, p_speech = detector.infer(feats)
    assert p_female.shape == p_speech.shape == (3,)
    assert (p_speech > 0.99).all()  # the fixture's speech head says "speech" to everything
    single = [detector.infer([f])[1][0] for f in feats]
    np.testing.assert_allclose(p_speech, single, rtol=1e-5)
    result = detector.predict(voice(200, 4.0), RATE)
    assert result.label != "no_speech" and result.reason is None
    assert all(s.p_speech is not None and s.p_speech > 0.99 for s in result.segments)


@pytest.mark.parametrize("kind", ["digital_silence", "white_noise", "room_noise", "hum"])
def test_no_speech_for_silence_and_noise(fake_detector, rng, kind):
    n = 5 * RATE
    if kind == "digital_silence":
        y = np.zeros(n, np.float32)
    elif kind == "white_noise":
        y = 0.3 * rng.standard_normal(n)
    elif kind == "room_noise":  # brown-ish rumble plus faint hiss
        y = np.cumsum(rng.standard_normal(n)) * 1e-3
        y = y - np.convolve(y, np.ones(400) / 400, mode="same") + 0.002 * rng.standard_normal(n)
    else:  # 50 Hz mains hum with harmonics: periodic, but not speech-like in level changes
        t = np.arange(n) / RATE
        y = 0.05 * (np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t))
    result = fake_detector.predict(np.asarray(y, np.float32), RATE)
    assert result.label == "no_speech"
    assert result.p_female is None and result.confidence is None
    assert all(s.p_female is None for s in result.segments)


def test_other_rates_and_channels(fake_detector):
    mono = voice(180, 4.0, 48000)
    stereo = np.stack([mono, mono], axis=1)
    assert fake_detector.predict(stereo, 48000).p_female == pytest.approx(fake_detector.predict(mono, 48000).p_female)
    assert fake_detector.predict(voice(180, 4.0, 8000), 8000).label != "no_speech"


@pytest.mark.parametrize("seconds", [0.001, 0.01, 0.1, 0.49])
def test_too_short_is_no_speech_with_a_reason(fake_detector, seconds):
    result = fake_detector.predict(voice(200, 1.0)[: int(seconds * RATE)], RATE)
    assert (result.label, result.reason, result.p_female, result.confidence) == ("no_speech", "too_short", None, None)
    assert result.duration == pytest.approx(seconds, abs=1 / RATE)


def test_silence_long_enough_has_reason_silence(fake_detector):
    result = fake_detector.predict(np.zeros(2 * RATE, np.float32), RATE)
    assert (result.label, result.reason, result.speech_seconds) == ("no_speech", "silence", 0.0)


def test_sound_the_model_rejects_is_not_speech(rejecting_model):
    result = Detector(rejecting_model).predict(voice(200, 4.0), RATE)
    assert (result.label, result.reason, result.p_female) == ("no_speech", "not_speech", None)
    assert result.segments and all(s.p_female is None and s.p_speech < 0.01 for s in result.segments)
    assert result.speech_seconds == 0.0
    # silence stays silence: the model is not asked about windows without speech
    assert Detector(rejecting_model).predict(np.zeros(2 * RATE, np.float32), RATE).reason == "silence"


def test_a_woman_then_a_man_is_mixed(pitch_detector):
    woman, man = voice(220, 6.0, seed=1), voice(110, 6.0, seed=2)
    both = pitch_detector.predict(np.concatenate([woman, man]), RATE)
    assert both.mixed
    window_p = [s.p_female for s in both.segments]
    assert window_p[0] > 0.9 and window_p[-1] < 0.1  # the pitch model hears who speaks when
    for one_voice, label in ((woman, "female"), (man, "male")):
        result = pitch_detector.predict(one_voice, RATE)
        assert result.label == label and not result.mixed


def test_dc_offset_and_clipping_keep_the_label(pitch_detector):
    """With a model that hears pitch, a 5 % DC offset and x10 clipping change nothing."""
    for f0, label in ((220, "female"), (110, "male")):
        y = voice(f0, 4.0, seed=f0)
        for variant in (y + np.float32(0.05), np.clip(y * 10, -1, 1)):
            result = pitch_detector.predict(variant, RATE)
            assert result.label == label, (f0, result.p_female)


def test_bad_arrays(fake_detector):
    bad = voice(200, 2.0)
    bad[100] = np.nan
    with pytest.raises(InvalidSamplesError, match="NaN"):
        fake_detector.predict(bad, RATE)
    with pytest.raises(ValueError, match="sample_rate"):
        fake_detector.predict(voice(200, 2.0))


def test_threshold_override(fake_model):
    y = voice(200, 4.0)
    p = Detector(fake_model).predict(y, RATE).p_female
    assert Detector(fake_model, threshold=min(p + 0.01, 0.99)).predict(y, RATE).label == "male"
    assert Detector(fake_model, threshold=max(p - 0.01, 0.01)).predict(y, RATE).label == "female"
    with pytest.raises(ValueError):
        Detector(fake_model, threshold=1.5)


def test_session_is_tuned_for_small_cpus_and_cached(fake_model):
    options = edge_model.session_options(edge_model.SessionOptions())
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.enable_cpu_mem_arena is False
    import onnxruntime as ort

    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    a, b, c = Detector(fake_model), Detector(fake_model), Detector(fake_model, threads=2)
    assert a._loaded.session is b._loaded.session
    assert c._loaded.session is not a._loaded.session


def test_model_metadata_is_read_from_the_file(tmp_path):
    from model_fixtures import test_metadata

    settings = test_metadata().feature_settings.with_changes(window_seconds=2.0, window_hop_seconds=0.5)
    path = make_model(tmp_path / "m.onnx", test_metadata(settings, threshold=0.42))
    detector = Detector(path)
    assert detector.settings == settings and detector.threshold == 0.42 and detector.name == "m"
    # 149 frames: windows of 100 end at 100 and 125; the 24 frames after are fewer than min_speech_seconds
    assert [s.start for s in detector.predict(voice(200, 3.0), RATE).segments] == [0.0, 0.5]


def test_a_model_that_asks_for_formants_gets_them(tmp_path):
    settings = test_metadata().feature_settings.with_changes(formants=True)
    detector = Detector(make_model(tmp_path / "f.onnx", test_metadata(settings)))
    inputs = window_inputs(voice(200, 3.0), detector.settings)
    assert detector.settings.formants and inputs[0].features is not None
    assert inputs[0].features.shape[1] == settings.n_features == N_FEATURES + 3
    assert inputs[0].features[:, -3:].any()  # the formant columns of voiced frames
    result = detector.predict(voice(200, 3.0), RATE)
    assert result.label in ("female", "male") and 0.0 <= result.p_female <= 1.0


def test_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        Detector(tmp_path / "missing.onnx")
    bare = make_model(tmp_path / "bare.onnx", with_metadata=False)
    with pytest.raises(ModelError, match="not a gvd model"):
        Detector(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="cannot load"):
        Detector(junk)


def test_shipped_names_default_and_manifest_verification(models_env):
    assert Detector().name == "gru"  # the manifest's default
    assert Detector("lstm").name == "lstm"
    listed = edge_model.list_models()
    assert [(m["name"], m["default"]) for m in listed] == [("gru", True), ("lstm", False)]
    with pytest.raises(ModelError, match="unknown model 'tcn'.*gru, lstm"):
        Detector("tcn")
    # A swapped file: valid model, different bytes.
    make_model(models_env / "lstm.onnx", seed=99)
    edge_model.clear_cache()
    with pytest.raises(ModelError, match="does not match .*models/manifest.json"):
        Detector("lstm")
    (models_env / "gru.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        Detector("gru")


def test_no_manifest_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(edge_model, "candidate_dirs", lambda: [tmp_path])
    assert edge_model.list_models() == []
    with pytest.raises(ModelError, match="no shipped models found"):
        Detector()


def test_bytes_input(fake_detector, tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, voice(200, 3.0), RATE)
    from_bytes = fake_detector.predict(path.read_bytes())
    assert from_bytes.path is None
    assert from_bytes.p_female == pytest.approx(fake_detector.predict(path).p_female)


# -- the shipped models (skipped, with the reason, until models/manifest.json exists) ---------------

@shipped_models
def test_shipped_models_match_their_manifest():
    manifest = json.loads(SHIPPED_MANIFEST.read_text())
    assert manifest["default"] in {m["name"] for m in manifest["models"]}
    for entry in manifest["models"]:
        assert sha256(SHIPPED_MANIFEST.parent / entry["file"]) == entry["sha256"]
        detector = Detector(entry["name"])
        assert detector.metadata.cell in ("gru", "lstm", "rnn")


# Measured 2026-12-01: every shipped model calls flite's `slt` voice (a synthetic woman, median F0
# ~167 Hz) male (p_female 0.38-0.48). Strict: the test turns red once a model gets it right.
SLT_CALLED_MALE = pytest.mark.xfail(strict=True, reason="the shipped models call the flite slt voice male")


@pytest.mark.parametrize("name", [
    pytest.param("female_16k.flac", marks=SLT_CALLED_MALE),
    pytest.param("female_44k_stereo.flac", marks=SLT_CALLED_MALE),
    "female_espeak_22k.flac", "male_16k.flac", "male_48k.flac", "room_noise_16k.flac"])
@shipped_models
def test_shipped_default_model_on_the_bundled_samples(name):
    result = Detector().predict(SHIPPED_MANIFEST.parent / "samples" / name)
    expected = "no_speech" if name.startswith("room_noise") else name.split("_")[0]
    assert result.label == expected, f"{name}: {result.label} (p_female {result.p_female})"
