"""The gvd command pauses the cyclic garbage collector while it starts, and always turns it back on."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from edge import startup

from model_fixtures import REPO

# Runs the command as the console script does and reports the collector's state when it ends.
PROBE = """
import atexit, gc, json, sys
atexit.register(lambda: sys.stderr.write("GC=" + json.dumps([gc.isenabled(), gc.get_freeze_count() > 0]) + "\\n"))
sys.argv = ["gvd", *{args!r}]
from edge.__main__ import main
main()
"""


def collector_at_exit(*args: str) -> tuple[int, list[bool]]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.startswith("GC=")]
    assert lines, result.stderr
    return result.returncode, json.loads(lines[-1][3:])


def test_pause_and_done_restore_the_collector():
    assert gc.isenabled()
    try:
        startup.pause()
        assert not gc.isenabled()
        startup.done()
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # what start-up built is out of later passes
        startup.done()  # idempotent
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_done_leaves_a_collector_paused_by_someone_else_alone():
    gc.disable()
    try:
        startup.pause()  # already off: not ours to turn back on
        startup.done()
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("args", [
    ("predict", "--json", str(REPO / "models" / "samples" / "male_16k.flac")),  # resumes once its model is loaded
    ("predict", "--model", "no-such-model", str(REPO / "models" / "samples" / "male_16k.flac")),  # fails first
    ("listen", "--fast", "--json", "--input", str(REPO / "models" / "samples" / "two_speakers.wav")),
    ("models",),  # resumes as soon as it is chosen
    ("--help",),
])
def test_the_command_turns_the_collector_back_on(args):
    code, (enabled, frozen) = collector_at_exit(*args)
    assert enabled and frozen, (code, args)
