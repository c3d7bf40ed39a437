"""The base install (no extras) gives a working `gvd` and an `edge` that imports no training stack."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "librosa", "noisereduce", "sklearn", "matplotlib", "mlflow", "tf2onnx", "scipy")


@pytest.mark.slow
def test_plain_pip_install_has_a_light_runtime(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)],
                             capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    help_out = subprocess.run([str(bindir / "gvd"), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert help_out.returncode == 0, help_out.stderr
    for command in ("predict", "listen", "models"):
        assert command in help_out.stdout

    probe = (
        "import sys, json, edge, edge.audio, edge.features, edge.pipeline, edge.clean, edge.vad, edge.cli\n"
        "import numpy as np\n"
        "from edge.pipeline import window_inputs\n"
        "from edge.settings import DEFAULT_SETTINGS\n"
        "window_inputs(np.zeros(16000, np.float32), DEFAULT_SETTINGS)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"heavy modules imported by the runtime: {out.stdout}"

    # Only the base dependencies got installed.
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True,
                            env=env).stdout.lower()
    for heavy in ("tensorflow", "librosa", "noisereduce", "scikit-learn", "mlflow"):
        assert heavy not in freeze
