"""gvd: on-device female/male voice detection with ONNX models.

Typical use::

    from edge import Detector
    result = Detector("gru").predict("clip.wav")
    print(result.label, result.p_female)
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any

# The frame analysis multiplies small matrices (autocorrelation basis, DCT per 64 frames; kept small
# enough for one thread even where NumPy came first); OpenBLAS spreading them over several cores made
# them 20x slower on a busy 2-core machine (measured), and the runtime analyses one block at a time.
# Only effective when edge is imported before NumPy; users can still override.
if "numpy" not in sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

from .errors import AudioError, GvdError, ModelError
from .settings import DEFAULT_SETTINGS, ORIGINAL_SETTINGS, FeatureSettings

__version__ = "0.1.0"

# Runtime classes are imported on first use, so that 'import edge' stays cheap.
_LAZY = {
    "Detector": ".detector",
    "Prediction": ".detector",
    "Segment": ".detector",
    "StreamingDetector": ".stream",
    "StreamEvent": ".stream",
    "list_models": ".model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")


__all__ = [
    "AudioError", "DEFAULT_SETTINGS", "Detector", "FeatureSettings", "GvdError", "ModelError",
    "ORIGINAL_SETTINGS", "Prediction", "Segment", "StreamEvent", "StreamingDetector", "__version__", "list_models",
]
