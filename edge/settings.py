"""The one frozen description of how audio becomes model input.

Training writes it into every exported model's metadata; the runtime reads it back and refuses a
model whose settings it cannot honour, so the two sides never disagree about features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import ModelError

SCHEMA_VERSION = 1
FEATURE_NORMS = ("none", "cmn", "cmvn")


@dataclass(frozen=True)
class FeatureSettings:
    # Audio
    sample_rate: int = 16000
    # MFCC (librosa-compatible: Slaney mel, power_to_db top_db=80, ortho DCT-II)
    n_mfcc: int = 13
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    # Analysis windows
    window_seconds: float = 3.0
    window_hop_seconds: float = 1.0
    min_speech_seconds: float = 0.5
    # Cleaning, in this order
    noise_reduction: bool = False
    rms_normalize: bool = True
    target_dbfs: float = -20.0
    pre_emphasis: float = 0.97
    # Per-window normalisation of the MFCC matrix over time
    feature_norm: str = "cmvn"
    # Speech detection: only speech samples reach the model
    vad: bool = True
    vad_frame_length: int = 512
    vad_energy_dbfs: float = -60.0
    vad_voicing: float = 0.45
    vad_hangover_seconds: float = 0.15
    vad_min_region_seconds: float = 0.1
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if not 0 < self.n_mfcc <= self.n_mels:
            problems.append("n_mfcc must be between 1 and n_mels")
        if self.hop_length <= 0 or self.n_fft <= 0:
            problems.append("n_fft and hop_length must be positive")
        if self.feature_norm not in FEATURE_NORMS:
            problems.append(f"feature_norm must be one of {FEATURE_NORMS}")
        if not 0 < self.min_speech_seconds <= self.window_seconds:
            problems.append("min_speech_seconds must be in (0, window_seconds]")
        if self.window_hop_seconds <= 0:
            problems.append("window_hop_seconds must be positive")
        if not 0.0 <= self.pre_emphasis < 1.0:
            problems.append("pre_emphasis must be in [0, 1)")
        if problems:
            raise ValueError("invalid feature settings: " + "; ".join(problems))

    @property
    def n_features(self) -> int:
        """Width of one frame of model input (the ONNX input's last dimension)."""
        return self.n_mfcc

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def window_hop_samples(self) -> int:
        return int(round(self.window_hop_seconds * self.sample_rate))

    @property
    def min_speech_samples(self) -> int:
        return int(round(self.min_speech_seconds * self.sample_rate))

    def with_changes(self, **changes: Any) -> "FeatureSettings":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSettings":
        """Rebuild settings from a model; refuse anything this runtime would have to guess."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(
                f"the model needs feature settings this runtime does not know ({', '.join(unknown)}); "
                "upgrade gvd or use a model exported for this version"
            )
        schema = data.get("schema", SCHEMA_VERSION)
        if schema > SCHEMA_VERSION:
            raise ModelError(
                f"the model's feature settings use schema {schema}, this runtime reads up to "
                f"{SCHEMA_VERSION}; upgrade gvd"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"the model's feature settings are invalid: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "FeatureSettings":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"the model's feature settings are not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError("the model's feature settings must be a JSON object")
        return cls.from_dict(data)


# The recipe of the original university project: no speech detection, noise reduction on,
# raw MFCCs, non-overlapping 3-second segments. Kept as the baseline we must beat.
ORIGINAL_SETTINGS = FeatureSettings(
    noise_reduction=True,
    feature_norm="none",
    vad=False,
    window_hop_seconds=3.0,
)

DEFAULT_SETTINGS = FeatureSettings()
