"""Training records (training.json) and the self-describing metadata of exported models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.decision import SPEECH_THRESHOLD
from edge.metadata import METADATA_PREFIX, OUTPUT_NAME, OUTPUT_NAMES, ModelMetadata
from edge.settings import FeatureSettings

from .errors import ExportError

# Used when training.json carries no licence: every gvd model is trained on these corpora.
DEFAULT_LICENSE = ("CC BY-NC-SA 4.0, non-commercial: trained on RAVDESS (CC BY-NC-SA 4.0), URDU-Dataset "
                   "(research use) and the original project's Indonesian recordings; see models/README.md")
_REQUIRED = ("cell", "model_config", "feature_settings", "threshold", "created", "model_version")


@dataclass(frozen=True)
class TrainingRecord:
    """The contents of ``<cell>/training.json`` written by ``gvd train``."""

    cell: str
    model_config: dict[str, Any]
    feature_settings: FeatureSettings
    threshold: float
    created: str
    model_version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    data_manifest_sha256: str = ""
    license: str = ""
    preset: str = ""
    outputs: tuple[str, ...] = (OUTPUT_NAME,)  # the network's outputs; p_speech when it has a speech head
    # Chosen on held-out corpora when leave-one-corpus-out results were merged in; else the shared default
    speech_threshold: float = SPEECH_THRESHOLD
    # Per corpus: files, female and male speakers, kind (adult / children / nonspeech), for the model card
    corpora: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> TrainingRecord:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ExportError(f"no training record at {path}: export needs the training.json that "
                              "'gvd train' writes next to model.keras") from exc
        except json.JSONDecodeError as exc:
            raise ExportError(f"{path} is not valid JSON: {exc}") from exc
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise ExportError(f"{path} lacks {', '.join(missing)}")
        try:
            settings = FeatureSettings.from_dict(data["feature_settings"])
            threshold = float(data["threshold"])
            speech_threshold = float(data.get("speech_threshold", SPEECH_THRESHOLD))
        except Exception as exc:
            raise ExportError(f"{path}: invalid feature settings or threshold: {exc}") from exc
        if not SPEECH_THRESHOLD <= speech_threshold < 1.0:
            raise ExportError(f"{path}: speech_threshold {speech_threshold} is outside [{SPEECH_THRESHOLD}, 1)")
        # Runs trained before the speech output existed have p_female only.
        outputs = tuple(data.get("outputs", [OUTPUT_NAME]))
        if not outputs or outputs[0] != OUTPUT_NAME or not set(outputs) <= set(OUTPUT_NAMES):
            raise ExportError(f"{path}: outputs {list(outputs)} must be {[OUTPUT_NAME]} or {list(OUTPUT_NAMES)}")
        return cls(cell=str(data["cell"]), model_config=dict(data["model_config"]), feature_settings=settings,
                   threshold=threshold, created=str(data["created"]), model_version=str(data["model_version"]),
                   metrics=dict(data.get("metrics") or {}),
                   data_manifest_sha256=str(data.get("data_manifest_sha256", "")),
                   license=str(data.get("license", "")), preset=str(data.get("preset", "")), outputs=outputs,
                   speech_threshold=speech_threshold, corpora=dict(data.get("corpora") or {}), path=path)

    def metadata(self, extra_metrics: dict[str, Any] | None = None) -> ModelMetadata:
        metrics = dict(self.metrics)
        if extra_metrics:
            metrics.update(extra_metrics)
        metrics = json.loads(json.dumps(metrics))  # exactly what a JSON round trip reads back
        return ModelMetadata(feature_settings=self.feature_settings, cell=self.cell,
                             model_version=self.model_version, created=self.created, threshold=self.threshold,
                             data_manifest_sha256=self.data_manifest_sha256, metrics=metrics,
                             license=self.license or DEFAULT_LICENSE, outputs=self.outputs,
                             speech_threshold=self.speech_threshold)


def attach_metadata(proto, metadata: ModelMetadata) -> None:
    """Replace any gvd.* metadata of an ``onnx.ModelProto`` with ``metadata``."""
    keep = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    for key, value in keep + sorted(metadata.to_props().items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(model: str | Path | bytes) -> ModelMetadata:
    """Read the metadata back the way the runtime does: through onnxruntime."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)


def verify_metadata(model: str | Path | bytes, expected: ModelMetadata) -> None:
    """Fail unless the metadata read back through onnxruntime equals what was written."""
    found = read_metadata(model)
    if found != expected:
        different = [name for name in expected.__dataclass_fields__
                     if getattr(found, name) != getattr(expected, name)]
        raise ExportError(f"the metadata read back differs from what was written: {', '.join(different)}")
