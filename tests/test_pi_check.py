"""`benchmarks/pi_check.sh` from a fresh clone: its native side installs gvd itself.

The emulated arm64 half needs root, debootstrap and QEMU (9-15 minutes): it is run by hand (see
docs/raspberry-pi.md). Its native half is what failed from a fresh clone (`No module named edge`),
and ``--native-only`` runs exactly that half: a throwaway venv, this checkout's wheel, and a prediction
on every sample clip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What a clone holds that the wheel build and the check read (no venvs, caches or build leftovers).
CLONE_PARTS = ("pyproject.toml", "README.md", "edge", "train", "export", "models", "benchmarks/pi_check.sh")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="pi_check.sh is a bash script")
def test_native_side_installs_gvd_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    for part in CLONE_PARTS:
        source, target = REPO / part, clone / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    # Nothing of the developer's environment: no activated venv, no PYTHONPATH, system tools only.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "LANG": "C.UTF-8", **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    result = subprocess.run(["bash", str(clone / "benchmarks" / "pi_check.sh"), "--native-only"], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    samples = [p for p in (REPO / "models" / "samples").iterdir() if p.suffix in (".wav", ".flac")]
    assert f"PASS (native only): a fresh install of this checkout classified {len(samples)} clips" in result.stdout
