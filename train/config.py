"""Training recipes: the original university recipe (the baseline) and ours (the default).

A :class:`TrainConfig` holds every hyper-parameter. It comes from a preset, optionally overlaid
with a JSON or TOML file and then with command-line options, and is recorded in full with each run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge.settings import ORIGINAL_SETTINGS, FeatureSettings

from .augment import AugmentConfig
from .models import CELLS, ORIGINAL_CONFIG, ModelConfig

LICENSE = ("Trained on 17 corpora including RAVDESS (CC BY-NC-SA 4.0, Livingstone & Russo 2018), TESS "
           "(CC BY-NC-ND 4.0), URDU-Dataset (research use, Latif et al. 2018), speechocean762, Common Voice (CC0), "
           "CMU ARCTIC, BAVED, LOTUS and small Kaldi sets (research use) and the original project's Indonesian "
           "recordings: non-commercial research use only; see models/README.md")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "default"
    features: FeatureSettings = field(default_factory=FeatureSettings)
    # Per-cell architecture; "cell" in each entry is overwritten by the cell being trained.
    models: dict[str, ModelConfig] = field(default_factory=dict)
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 50
    patience: int = 10
    label_smoothing: float = 0.0
    # Windows per epoch (0 = one pass over the training windows).
    steps_per_epoch: int = 0
    # Sample so that every (corpus, label) stratum contributes equally ...
    balance: bool = False
    # ... or, with this, in proportion to the square root of its corpus's speaker count (capped; both labels
    # of a corpus alike, so the corpus still says nothing about sex): one speaker's three files are
    # not drawn as often as a corpus of 24 speakers.
    speaker_weighted: bool = False
    # Corpora of one sex only teach the speech output, not the gender output: in them, sex cannot be
    # told apart from the recording room, microphone or delivery (acted emotions, chant).
    single_sex_gender: bool = True
    # Share of each batch drawn from non-speech recordings (0 = no speech output is trained).
    nonspeech_fraction: float = 0.0
    # Random crops of each batch to one length, in MFCC frames (0 = only crop to the batch minimum).
    crop_min_frames: int = 0
    crop_max_frames: int = 0
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(variants=0))
    # Domain-adversarial training: weight of a reversed-gradient corpus classifier on the pooled
    # representation (0 = off), so that what tells one corpus from another cannot carry the decision.
    adversarial: float = 0.0
    # SpecAugment-style masking of each training crop (after normalisation): this many spans of up
    # to ``mask_frames`` frames and of up to ``mask_coefficients`` MFCC coefficients are zeroed.
    time_masks: int = 0
    mask_frames: int = 8
    coefficient_masks: int = 0
    mask_coefficients: int = 2
    # Pitch moved, spectral envelope kept: with this probability a training crop's log-F0 column is
    # shifted by up to this many octaves (one offset per crop, voiced frames only), so that a high
    # voice with a long vocal tract (a man shouting or chanting) is not female by pitch alone.
    # Measured at 0.5 (docs/accuracy.md): no leave-one-corpus-out gain, and TTS women called male; off.
    p_pitch_shift: float = 0.0
    pitch_shift_octaves: float = 0.6
    # Where the sexes' pitch ranges overlap, pitch cannot decide: windows of men whose median voiced
    # pitch is above 180 Hz and of women below 185 Hz are drawn this many times as often as the other
    # windows of their (corpus, label) stratum (1 = no preference; needs ``balance`` and pitch columns).
    # Measured at 3 over four seeds (docs/accuracy.md, eighth round): raised men and chant gain, the
    # older TESS speaker and women over 200 Hz lose, the worst corpus moves within the seeds' spread; off.
    overlap_weight: float = 1.0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    threads: int = 2
    workers: int = 2

    def model_config(self, cell: str) -> ModelConfig:
        base = self.models.get(cell) or self.models.get("*") or ModelConfig()
        return replace(base, cell=cell, n_features=self.features.n_features, speech_head=self.nonspeech_fraction > 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = self.features.to_dict()
        data["models"] = {k: v.to_dict() for k, v in self.models.items()}
        data["augment"] = self.augment.to_dict()
        return data

    def params(self) -> dict[str, Any]:
        """Flat key/value pairs (for MLflow)."""
        flat: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                flat[prefix] = value

        walk("", self.to_dict())
        return flat


def _original() -> TrainConfig:
    # Exactly the university recipe: ORIGINAL_SETTINGS features, one 64-unit layer on the last state,
    # Dropout 0.2, Adam 1e-3, binary cross-entropy, batch 32, 50 epochs, early stopping patience 10,
    # no augmentation and no balancing.
    return TrainConfig(
        preset="original",
        features=ORIGINAL_SETTINGS,
        models={cell: ORIGINAL_CONFIG[cell] for cell in CELLS},
        learning_rate=1e-3,
        batch_size=32,
        epochs=50,
        patience=10,
        balance=False,
        augment=AugmentConfig(variants=0),
    )


def _default() -> TrainConfig:
    # Frames every 20 ms with pitch and voicing beside 30 window-normalised cepstra (edge.settings),
    # channel, music, clipping and DC augmentation, corpus x gender balanced batches with a share of
    # non-speech for the speech output, one 64-unit layer with mean+max pooling over time.
    base = ModelConfig(units=64, layers=1, bidirectional=False, pooling="meanmax", dense_units=32, dropout=0.3)
    settings = FeatureSettings()
    return TrainConfig(
        preset="default",
        features=settings,
        models={"lstm": base, "gru": base, "rnn": base},
        learning_rate=2e-3,
        batch_size=64,
        epochs=25,
        patience=6,
        label_smoothing=0.05,
        steps_per_epoch=100,
        balance=True,
        nonspeech_fraction=0.3,
        speaker_weighted=True,
        single_sex_gender=False,
        crop_min_frames=settings.min_speech_frames,
        crop_max_frames=settings.window_frames,
        augment=AugmentConfig(variants=3, p_music=0.25, p_clip=0.1, p_dc=0.1),
    )


PRESETS = {"original": _original, "default": _default}


def preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML file of overrides (same keys as :class:`TrainConfig`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ValueError(f"{path}: config files must be .json or .toml")
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a table/object of options")
    return data


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Overlay a dict (from a file or the command line) onto a config; unknown keys are errors."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "features":
            changes[key] = FeatureSettings.from_dict({**config.features.to_dict(), **value})
        elif key == "augment":
            changes[key] = AugmentConfig.from_dict({**config.augment.to_dict(), **value})
        elif key == "models":
            models = dict(config.models)
            for cell, spec in value.items():
                base = models.get(cell) or models.get("*") or ModelConfig()
                models[cell] = replace(base, **spec) if isinstance(spec, dict) else spec
            changes[key] = models
        elif key == "split":
            changes[key] = tuple(float(v) for v in value)
        else:
            changes[key] = value
    return replace(config, **changes)
