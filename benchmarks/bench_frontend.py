"""Per-call cost of the runtime front end (frame analysis, speech mask, decoding), optionally against
an earlier commit, measured alternately so that a busy machine slows both sides alike.

    python benchmarks/bench_frontend.py                      # this checkout only
    python benchmarks/bench_frontend.py --reference a680bef  # that commit side by side (git archive)

Every case runs in a new process per side (the allocator's state after other work changes the page
faults a call takes, so cases must not share a process), ``--rounds`` times alternating the sides;
a figure is the minimum over those processes and their ``--repeat`` rounds of the mean of ``--number``
calls (the minimum is the least disturbed by other work), in milliseconds. ``faults`` are minor page
faults per call in the last round (the steady state). Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "models" / "samples"
CASES = ("analyse_frames, 4.2 s clip", "speech_mask, one 3 s window", "window_inputs, 4.2 s clip",
         "window_inputs, 60 s clip", "decode+resample, 4.2 s FLAC 16 kHz", "decode+resample, 3.4 s FLAC 48 kHz",
         "decode+resample, 13.3 s WAV 16 kHz")


def case(name: str):
    """A zero-argument callable for ``name``, built from the ``edge`` found on sys.path."""
    audio = importlib.import_module("edge.audio")
    settings = importlib.import_module("edge.settings").DEFAULT_SETTINGS
    features = importlib.import_module("edge.features")
    pipeline = importlib.import_module("edge.pipeline")
    vad = importlib.import_module("edge.vad")
    if name.startswith("decode"):
        path = {"4.2 s FLAC 16 kHz": "male_16k.flac", "3.4 s FLAC 48 kHz": "male_48k.flac",
                "13.3 s WAV 16 kHz": "two_speakers.wav"}[name.split(", ")[1]]
        return lambda: list(audio.iter_mono(SAMPLES / path)[1])
    clip, _ = audio.load_audio(SAMPLES / "male_16k.flac")
    if name.startswith("analyse_frames"):
        return lambda: features.analyse_frames(clip, settings)
    if name.startswith("speech_mask"):
        window = features.analyse_frames(clip, settings).rows(0, settings.window_frames)
        return lambda: vad.speech_mask(window, settings)
    if name.endswith("60 s clip"):
        clips = [audio.load_audio(p)[0] for p in sorted(SAMPLES.glob("*.flac"))]
        clip = np.concatenate(clips * 3)[: 60 * settings.sample_rate]
    return lambda: pipeline.window_inputs(clip, settings)


def worker(name: str, repeat: int, number: int) -> dict:
    fn = case(name)
    fn()
    best, faults = float("inf"), 0.0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number * 1e3)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / number
    return {"ms": best, "faults": faults}


def extract(revision: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "edge"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run(side: Path, name: str, repeat: int, number: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(side)}
    command = [sys.executable, __file__, "--worker", name, "--repeat", str(repeat), "--number", str(number)]
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help="git revision to measure beside this checkout")
    parser.add_argument("--rounds", type=int, default=3, help="processes per case and side [3]")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--number", type=int, default=10)
    parser.add_argument("--cases", default=None, help="comma-separated prefixes of the cases to run [all]")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeat, args.number)))
        return 0
    names = [n for n in CASES if not args.cases or any(n.startswith(c) for c in args.cases.split(","))]
    with tempfile.TemporaryDirectory(prefix="gvd-bench-") as folder:
        sides = {"this checkout": REPO}
        if args.reference:
            sides = {args.reference: extract(args.reference, Path(folder)), **sides}
        best: dict[tuple[str, str], dict] = {}
        for name in names:
            for _ in range(args.rounds):
                for label, side in sides.items():
                    result = run(side, name, args.repeat, args.number)
                    old = best.get((label, name))
                    best[label, name] = result if old is None or result["ms"] < old["ms"] else old
    labels = list(sides)
    print("| case | " + " | ".join(f"{s} ms | faults" for s in labels) + (" | speed-up |" if len(labels) > 1 else " |"))
    print("|---" * (1 + 2 * len(labels) + (len(labels) > 1)) + "|")
    for name in names:
        cells = [f"{best[s, name]['ms']:.3f} | {best[s, name]['faults']:.0f}" for s in labels]
        ratio = f" | {best[labels[0], name]['ms'] / best[labels[-1], name]['ms']:.2f}x" if len(labels) > 1 else ""
        print(f"| {name} | " + " | ".join(cells) + ratio + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
