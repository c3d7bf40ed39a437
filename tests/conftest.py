"""Shared fixtures. Tests that need the shared recordings skip, with the reason, where they are absent.

Helpers that build models and signals live in ``model_fixtures.py``, ``serve_fixtures.py`` and ``signals.py``;
the fixtures are defined here only, so test modules use them without importing them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.settings import DEFAULT_SETTINGS

from model_fixtures import make_model, make_models_dir, make_pitch_model

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the shared recordings at {SHARED_DATA} "
                                   "(present in CI, not in a user's clone)")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory) -> Path:
    """A random-weight GRU model with gvd metadata, for tests that must not depend on shipped models."""
    return make_model(tmp_path_factory.mktemp("model") / "fake_gru.onnx")


@pytest.fixture(scope="session")
def fake_detector(fake_model):
    from edge import Detector

    return Detector(fake_model)


@pytest.fixture(scope="session")
def speech_model(tmp_path_factory) -> Path:
    """A random-weight GRU model that also outputs p_speech, and accepts every window as speech."""
    return make_model(tmp_path_factory.mktemp("model") / "fake_speech_gru.onnx", speech_logit=8.0)


@pytest.fixture(scope="session")
def rejecting_model(tmp_path_factory) -> Path:
    """A model whose p_speech output is below 0.001 for every window: everything is 'not speech'."""
    return make_model(tmp_path_factory.mktemp("model") / "fake_rejecting_gru.onnx", speech_logit=-8.0)


@pytest.fixture(scope="session")
def pitch_detector(tmp_path_factory):
    """A detector that calls a voice female from its pitch alone (high pitch: female)."""
    from edge import Detector

    return Detector(make_pitch_model(tmp_path_factory.mktemp("model") / "fake_pitch.onnx"))


@pytest.fixture
def models_env(tmp_path, monkeypatch) -> Path:
    """A models folder with a manifest, made the one gvd finds (GVD_MODELS_DIR)."""
    from edge import model

    folder = make_models_dir(tmp_path / "models")
    monkeypatch.setenv("GVD_MODELS_DIR", str(folder))
    model.clear_cache()
    yield folder
    model.clear_cache()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A linear model on the time-mean of the features, for the server tests."""
    from serve_fixtures import build_model  # imported here: it needs the serve extra

    weights = np.zeros(DEFAULT_SETTINGS.n_features)
    weights[1] = 0.05  # the spectral tilt coefficient: differs between the two synthetic voices
    return build_model(tmp_path_factory.mktemp("model") / "tiny.onnx", weights)


@pytest.fixture(scope="session")
def voices(tmp_path_factory) -> dict[str, Path]:
    """A low and a high synthetic voice as WAV, and the high one again (another seed) as FLAC."""
    from serve_fixtures import SR, synthetic_voice

    folder = tmp_path_factory.mktemp("audio")
    files = {}
    for name, f0 in (("low", 120.0), ("high", 220.0)):
        path = folder / f"{name}.wav"
        sf.write(path, synthetic_voice(f0), SR, subtype="PCM_16")
        files[name] = path
    flac = folder / "high.flac"
    sf.write(flac, synthetic_voice(220.0, seed=1), SR)
    files["flac"] = flac
    return files


@pytest.fixture
def client(tiny_model: Path, tmp_path: Path):
    """A TestClient on an app serving ``tiny_model``, its feedback in a fresh folder."""
    from serve_fixtures import make_client

    with make_client(tiny_model, tmp_path / "feedback") as test_client:
        yield test_client
