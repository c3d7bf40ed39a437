"""Start-up of the ``gvd`` command: the cyclic garbage collector waits until the command has loaded.

Loading click, NumPy, onnxruntime and a model creates ~45,000 objects that live as long as the
process, and fewer than 500 that are garbage; yet the collector went over them 60 times before a
one-file ``gvd predict`` printed its result: 11 ms of its ~200 ms (measured with ``gc.callbacks``;
25 M of its 750 M instructions under callgrind). So the entry point pauses it, and :func:`done`
turns it back on once the command has what it needs, with everything built so far frozen
(``gc.freeze``): later passes, in a long batch or a server, skip it. Left: 14 collections, 2.5 ms
(before the entry point runs, and after the model is loaded); the garbage start-up leaves costs
0.1 MB of peak RSS. Only the command does this; ``import edge`` leaves the collector alone.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Hold the collector until :func:`done` (no-op when it is already off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def done() -> None:
    """Start-up is over: freeze what it built and collect as usual from here on (idempotent)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
