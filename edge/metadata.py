"""The metadata every gvd ONNX model carries, and how it is read back.

Keys live in the ONNX ``metadata_props`` under the ``gvd.`` prefix; values are strings (JSON where
structured). The export step writes them, the runtime reads them and never guesses a missing one.

Model I/O contract: input ``features`` float32 [batch, time, n_mfcc]; output ``p_female`` float32
[batch, 1], the probability that the speaker is female (labels[1]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError
from .settings import FeatureSettings

FORMAT_VERSION = 1
INPUT_NAME = "features"
OUTPUT_NAME = "p_female"
LABELS = ("male", "female")
CELLS = ("lstm", "gru", "rnn")

_PREFIX = "gvd."
_REQUIRED = ("format_version", "feature_settings", "labels", "threshold", "cell", "model_version", "created")


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
    format_version: int = FORMAT_VERSION

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
        }
        return {_PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        """Parse ``custom_metadata_map`` from onnxruntime; refuse models this runtime cannot honour."""
        values = {key[len(_PREFIX):]: value for key, value in props.items() if key.startswith(_PREFIX)}
        missing = [key for key in _REQUIRED if key not in values]
        if missing:
            raise ModelError(
                "this ONNX file is not a gvd model, or was exported without its settings "
                f"(missing metadata: {', '.join(_PREFIX + m for m in missing)}); re-export it with 'gvd export'"
            )
        try:
            version = int(values["format_version"])
            labels = tuple(json.loads(values["labels"]))
            threshold = float(values["threshold"])
            metrics = json.loads(values.get("metrics") or "{}")
        except (ValueError, TypeError) as exc:
            raise ModelError(f"the model's metadata is malformed: {exc}") from exc
        if version > FORMAT_VERSION:
            raise ModelError(f"the model uses metadata format {version}; this runtime reads up to "
                             f"{FORMAT_VERSION}: upgrade gvd")
        if labels != LABELS:
            raise ModelError(f"the model's labels are {labels}; this runtime expects {LABELS}")
        if values["cell"] not in CELLS:
            raise ModelError(f"unknown cell type {values['cell']!r}; expected one of {CELLS}")
        if not 0.0 < threshold < 1.0:
            raise ModelError(f"the model's decision threshold {threshold} is outside (0, 1)")
        return cls(
            feature_settings=FeatureSettings.from_json(values["feature_settings"]),
            cell=values["cell"],
            model_version=values["model_version"],
            created=values["created"],
            threshold=threshold,
            labels=labels,  # type: ignore[arg-type]
            data_manifest_sha256=values.get("data_manifest_sha256", ""),
            metrics=metrics,
            license=values.get("license", ""),
            format_version=version,
        )
