"""The metadata every gvd ONNX model carries, and how it is read back.

Keys live in the ONNX ``metadata_props`` under the ``gvd.`` prefix; values are strings (JSON where
structured). The export step writes them, the runtime reads them and never guesses: every key of
the model's format version is required, and a model written in an older format is brought up to
date only by the explicit migrations below.

Model I/O contract: input ``features`` float32 [batch, time, n_features] (time dynamic); output
``p_female`` float32 [batch, 1], the probability that the speaker is female (labels[1]); optionally
``p_speech`` float32 [batch, 1], the probability that the window is speech, when ``outputs`` says so;
a window is taken for speech when ``p_speech`` reaches the model's ``speech_threshold``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .decision import SPEECH_THRESHOLD
from .errors import ModelError
from .settings import FeatureSettings

FORMAT_VERSION = 3
METADATA_PREFIX = "gvd."
INPUT_NAME = "features"
OUTPUT_NAME = "p_female"
SPEECH_OUTPUT_NAME = "p_speech"
OUTPUT_NAMES = (OUTPUT_NAME, SPEECH_OUTPUT_NAME)
LABELS = ("male", "female")  # index = the model's class: p_female is the probability of labels[1]
CELLS = ("lstm", "gru", "rnn")

_KEYS_V1 = ("format_version", "feature_settings", "labels", "threshold", "cell", "model_version", "created",
            "data_manifest_sha256", "metrics", "license")
# Every key each format version writes; all of them are required when reading that version.
KEYS_BY_VERSION: dict[int, tuple[str, ...]] = {1: _KEYS_V1, 2: (*_KEYS_V1, "outputs"),
                                               3: (*_KEYS_V1, "outputs", "speech_threshold")}


def _v1_to_v2(values: dict[str, str]) -> dict[str, str]:
    # Format 1 predates the speech output: those models have p_female only.
    return {**values, "outputs": json.dumps([OUTPUT_NAME]), "format_version": "2"}


def _v2_to_v3(values: dict[str, str]) -> dict[str, str]:
    # Format 2 models were judged with the one threshold every model then shared.
    return {**values, "speech_threshold": repr(SPEECH_THRESHOLD), "format_version": "3"}


MIGRATIONS: dict[int, Callable[[dict[str, str]], dict[str, str]]] = {1: _v1_to_v2, 2: _v2_to_v3}


@dataclass(frozen=True)
class ModelMetadata:
    feature_settings: FeatureSettings
    cell: str
    model_version: str
    created: str  # ISO 8601, UTC
    threshold: float = 0.5
    labels: tuple[str, str] = LABELS
    data_manifest_sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    # A window is speech when p_speech reaches this (chosen per model on held-out corpora at export)
    speech_threshold: float = SPEECH_THRESHOLD
    format_version: int = FORMAT_VERSION

    @property
    def has_speech_output(self) -> bool:
        return SPEECH_OUTPUT_NAME in self.outputs

    def to_props(self) -> dict[str, str]:
        """String key/value pairs for ``onnx.ModelProto.metadata_props``."""
        values = {
            "format_version": str(self.format_version),
            "feature_settings": self.feature_settings.to_json(),
            "labels": json.dumps(list(self.labels)),
            "threshold": repr(float(self.threshold)),
            "cell": self.cell,
            "model_version": self.model_version,
            "created": self.created,
            "data_manifest_sha256": self.data_manifest_sha256,
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "license": self.license,
            "outputs": json.dumps(list(self.outputs)),
            "speech_threshold": repr(float(self.speech_threshold)),
        }
        return {METADATA_PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """Parse ``custom_metadata_map`` from onnxruntime; refuse models this runtime cannot honour."""
        values = migrate(_prefixed(props))
        return cls(
            feature_settings=FeatureSettings.from_json(values["feature_settings"]),
            cell=_cell(values["cell"]),
            model_version=_text(values, "model_version", required=True),
            created=_text(values, "created", required=True),
            threshold=_threshold(values["threshold"]),
            labels=_labels(values["labels"]),
            data_manifest_sha256=_text(values, "data_manifest_sha256"),
            metrics=_metrics(values["metrics"]),
            license=_text(values, "license"),
            outputs=_outputs(values["outputs"]),
            speech_threshold=_threshold(values["speech_threshold"], "speech threshold"),
            format_version=FORMAT_VERSION,
        )


def _prefixed(props: dict[str, str]) -> dict[str, str]:
    return {key[len(METADATA_PREFIX):]: value for key, value in props.items() if key.startswith(METADATA_PREFIX)}


def _version(values: dict[str, str]) -> int:
    if "format_version" not in values:
        raise ModelError(
            "this ONNX file is not a gvd model, or was exported without its settings "
            f"(no {METADATA_PREFIX}format_version in its metadata); re-export it with 'gvd export'"
        )
    try:
        version = int(values["format_version"])
    except ValueError:
        raise ModelError(f"the model's metadata format_version {values['format_version']!r} "
                         "is not an integer") from None
    if version > FORMAT_VERSION:
        raise ModelError(f"the model uses metadata format {version}; this runtime reads up to "
                         f"{FORMAT_VERSION}: upgrade gvd")
    if version not in KEYS_BY_VERSION:
        raise ModelError(f"the model's metadata format {version} does not exist")
    return version


def migrate(values: dict[str, str]) -> dict[str, str]:
    """Metadata values (without the prefix) checked against their own format, then brought to the current one."""
    version = _version(values)
    expected = KEYS_BY_VERSION[version]
    missing = [key for key in expected if key not in values]
    if missing:
        raise ModelError(f"the model's metadata (format {version}) lacks "
                         f"{', '.join(METADATA_PREFIX + key for key in missing)}; re-export it with 'gvd export'")
    unknown = sorted(set(values) - set(expected))
    if unknown:
        raise ModelError(f"the model's metadata has keys format {version} does not define "
                         f"({', '.join(METADATA_PREFIX + key for key in unknown)}); upgrade gvd")
    while version < FORMAT_VERSION:
        values = MIGRATIONS[version](values)
        version += 1
    return values


def _json(text: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"the model's metadata {METADATA_PREFIX}{key} is not valid JSON: {exc}") from exc


def _text(values: dict[str, str], key: str, required: bool = False) -> str:
    value = values[key]
    if required and not value.strip():
        raise ModelError(f"the model's metadata {METADATA_PREFIX}{key} is empty")
    return value


def _cell(value: str) -> str:
    if value not in CELLS:
        raise ModelError(f"unknown cell type {value!r}; expected one of {CELLS}")
    return value


def _threshold(text: str, what: str = "decision threshold") -> float:
    try:
        threshold = float(text)
    except ValueError:
        raise ModelError(f"the model's {what} {text!r} is not a number") from None
    if not 0.0 < threshold < 1.0:
        raise ModelError(f"the model's {what} {threshold} is outside (0, 1)")
    return threshold


def _labels(text: str) -> tuple[str, str]:
    labels = _json(text, "labels")
    if not isinstance(labels, list) or tuple(labels) != LABELS:
        raise ModelError(f"the model's labels are {labels}; this runtime expects {list(LABELS)}")
    return LABELS


def _metrics(text: str) -> dict[str, Any]:
    metrics = _json(text, "metrics")
    if not isinstance(metrics, dict):
        raise ModelError("the model's metadata gvd.metrics is not a JSON object")
    return metrics


def _outputs(text: str) -> tuple[str, ...]:
    outputs = _json(text, "outputs")
    if (not isinstance(outputs, list) or not outputs or outputs[0] != OUTPUT_NAME
            or len(set(outputs)) != len(outputs) or not set(outputs) <= set(OUTPUT_NAMES)):
        raise ModelError(f"the model's metadata gvd.outputs is {outputs!r}; expected {[OUTPUT_NAME]} "
                         f"or {list(OUTPUT_NAMES)}")
    return tuple(outputs)
