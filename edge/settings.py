"""The one frozen description of how audio becomes model input.

Training writes it into every exported model's metadata; the runtime reads it back and refuses a
model whose settings it cannot honour, so the two sides never disagree about features. Every key is
required when read back: the runtime never fills a gap with a default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import ModelError

SCHEMA_VERSION = 3
# Settings a schema added, with the value every model of the schema before it had: the feature did
# not exist then, so reading an older model this way is a rule, not a guess.
ADDED_IN_SCHEMA = {3: {"formants": False}}
FEATURE_NORMS = ("none", "cmn", "cmvn")
# Formant columns per frame when ``formants`` is on (F1-F3)
N_FORMANTS = 3


@dataclass(frozen=True)
class FeatureSettings:
    # Audio
    sample_rate: int = 16000
    # Frames: one analysis of the whole clip; windows are slices of these frames.
    frame_length: int = 512  # samples per Hann-windowed frame (32 ms)
    hop_length: int = 320  # samples between frames (20 ms)
    # Cepstra (Slaney mel, orthonormal DCT-II of the log mel power)
    n_mels: int = 64
    n_mfcc: int = 30
    fmin: float = 60.0
    fmax: float = 7600.0
    pre_emphasis: float = 0.97  # applied as the filter's spectral tilt on the mel filters
    # Pitch: log F0 and voicing strength per frame, appended to the cepstra (not normalised: the
    # absolute pitch is a sex cue that channel normalisation must not remove)
    pitch: bool = True
    # Formants: log F1-F3 of voiced frames from linear prediction, after the pitch columns (not
    # normalised: where they sit is the vocal tract's length)
    formants: bool = False
    # Per-window normalisation of the cepstra over the window's speech frames
    feature_norm: str = "cmn"
    # Without normalisation, the window's speech is levelled to this RMS (a shift of c0)
    rms_normalize: bool = True
    target_dbfs: float = -20.0
    # Stationary spectral gating of the audio before framing (the original recipe)
    noise_reduction: bool = False
    # Analysis windows
    window_seconds: float = 3.0
    window_hop_seconds: float = 1.0
    min_speech_seconds: float = 0.5
    # Speech detection: only speech frames reach the model
    vad: bool = True
    vad_energy_dbfs: float = -70.0
    vad_voicing: float = 0.5
    vad_hangover_seconds: float = 0.12
    vad_min_region_seconds: float = 0.1
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = self._spectrum_problems() + self._window_problems()
        if problems:
            raise ValueError("invalid feature settings: " + "; ".join(problems))

    def _spectrum_problems(self) -> list[str]:
        """What is wrong with the frame and MFCC settings (in the order the message lists them)."""
        problems = []
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if not 0 < self.n_mfcc <= self.n_mels:
            problems.append("n_mfcc must be between 1 and n_mels")
        if self.hop_length <= 0 or self.frame_length < self.hop_length:
            problems.append("hop_length must be positive and at most frame_length")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append("need 0 <= fmin < fmax <= sample_rate / 2")
        if self.feature_norm not in FEATURE_NORMS:
            problems.append(f"feature_norm must be one of {FEATURE_NORMS}")
        return problems

    def _window_problems(self) -> list[str]:
        """What is wrong with the analysis-window and pre-emphasis settings."""
        problems = []
        if not 0 < self.min_speech_seconds <= self.window_seconds:
            problems.append("min_speech_seconds must be in (0, window_seconds]")
        if self.window_seconds * self.sample_rate < self.frame_length:
            problems.append("window_seconds must hold at least one frame")
        if self.window_hop_seconds <= 0:
            problems.append("window_hop_seconds must be positive")
        if not 0.0 <= self.pre_emphasis < 1.0:
            problems.append("pre_emphasis must be in [0, 1)")
        return problems

    @property
    def n_features(self) -> int:
        """Width of one frame of model input (the ONNX input's last dimension)."""
        return self.n_mfcc + (2 if self.pitch else 0) + (N_FORMANTS if self.formants else 0)

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def frames_in(self, seconds: float) -> int:
        """Whole frames (on the frame grid) in ``seconds`` of audio; at least one."""
        return max(1, int(round(seconds * self.sample_rate / self.hop_length)))

    @property
    def window_frames(self) -> int:
        return self.frames_in(self.window_seconds)

    @property
    def window_hop_frames(self) -> int:
        return self.frames_in(self.window_hop_seconds)

    @property
    def min_speech_frames(self) -> int:
        return self.frames_in(self.min_speech_seconds)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def min_speech_samples(self) -> int:
        return int(round(self.min_speech_seconds * self.sample_rate))

    def with_changes(self, **changes: Any) -> FeatureSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSettings:
        """Rebuild settings from a model; refuse anything this runtime would have to guess."""
        schema = data.get("schema")
        if not isinstance(schema, int):
            raise ModelError("the model's feature settings have no schema version; re-export it with 'gvd export'")
        if schema in range(min(ADDED_IN_SCHEMA) - 1, SCHEMA_VERSION):
            data = _upgrade(data, schema)
        elif schema != SCHEMA_VERSION:
            newer = schema > SCHEMA_VERSION
            raise ModelError(
                f"the model's feature settings use schema {schema}, this runtime reads schema {SCHEMA_VERSION}: "
                + ("upgrade gvd" if newer else "re-export the model with this version of gvd")
            )
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown:
            raise ModelError(
                f"the model needs feature settings this runtime does not know ({', '.join(unknown)}); "
                "upgrade gvd or use a model exported for this version"
            )
        if missing:
            raise ModelError(f"the model's feature settings lack {', '.join(missing)}; re-export it with 'gvd export'")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"the model's feature settings are invalid: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> FeatureSettings:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"the model's feature settings are not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError("the model's feature settings must be a JSON object")
        return cls.from_dict(data)


def _upgrade(data: dict[str, Any], schema: int) -> dict[str, Any]:
    """Settings of an older schema as this schema: each added setting at the value it had before."""
    data = dict(data)
    for version in range(schema + 1, SCHEMA_VERSION + 1):
        for key, value in ADDED_IN_SCHEMA[version].items():
            if key in data:
                raise ModelError(f"the model's feature settings use schema {schema} but have {key!r}, "
                                 f"which schema {version} added; re-export it with 'gvd export'")
            data[key] = value
    data["schema"] = SCHEMA_VERSION
    return data


# The recipe of the original university project: no speech detection, noise reduction on, 13 raw
# MFCCs from 2,048-point frames every 512 samples over 128 mels, non-overlapping 3-second segments.
# Kept as the baseline we must beat.
ORIGINAL_SETTINGS = FeatureSettings(
    frame_length=2048,
    hop_length=512,
    n_mels=128,
    n_mfcc=13,
    fmin=0.0,
    fmax=8000.0,
    pitch=False,
    feature_norm="none",
    noise_reduction=True,
    vad=False,
    window_hop_seconds=3.0,
)

# What the shipped default model uses (models/README.md): the defaults above.
DEFAULT_SETTINGS = FeatureSettings()
