"""gvd: on-device female/male voice detection with ONNX models.

Typical use::

    from edge import Detector
    result = Detector("gru").predict("clip.wav")
    print(result.label, result.p_female)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import AudioError, GvdError, ModelError
from .settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS, FeatureSettings

__version__ = "0.1.0"

# Runtime classes are imported on first use, so that 'import edge' stays cheap.
_LAZY = {
    "Detector": ".detector",
    "Prediction": ".detector",
    "StreamingDetector": ".stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")


__all__ = [
    "AudioError", "DEFAULT_SETTINGS", "Detector", "FeatureSettings", "GvdError", "ModelError",
    "ORIGINAL_SETTINGS", "Prediction", "StreamingDetector", "__version__",
]
