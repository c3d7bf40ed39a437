"""How often the runtime's pitch column is an octave off, per corpus and sex, against WORLD's Harvest.

The models read a per-frame log F0 beside the cepstra; a woman's frame read an octave down looks like
a man's, a man's read an octave up like a woman's. This script runs shared recordings through the
runtime's own pipeline (the windows a model sees: speech frames, voiced ones carry a pitch) and
compares each voiced frame's F0 with Harvest's (pyworld, in the ``train`` extra), which tracks with
long windows and continuity and is taken here as the reference where it calls the frame voiced.

    python benchmarks/pitch_track.py --shared ../shared --per-sex 25
    python benchmarks/pitch_track.py --shared ../shared --corpora tess,baved --settings '{"pitch_smoothing": 5}'

A frame is "down" below 0.6x the reference, "up" above 1.7x, "close" within a tenth of an octave.
Nothing is written; the numbers are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.audio import load_audio  # noqa: E402
from edge.features import PITCH_REFERENCE_HZ  # noqa: E402
from edge.pipeline import FrameCursor  # noqa: E402
from edge.settings import FeatureSettings  # noqa: E402
from train.evaluate import voiced_frames  # noqa: E402

DOWN, UP, CLOSE_OCTAVES = 0.6, 1.7, 0.1


@dataclass
class Tally:
    clips: int = 0
    frames: int = 0
    down: int = 0
    up: int = 0
    close: int = 0

    def add(self, ratio: np.ndarray) -> None:
        self.clips += 1
        self.frames += ratio.size
        self.down += int(np.sum(ratio < DOWN))
        self.up += int(np.sum(ratio > UP))
        self.close += int(np.sum(np.abs(np.log2(ratio)) < CLOSE_OCTAVES))

    def row(self, name: str) -> str:
        shares = [f"{100 * k / self.frames:.1f} %" if self.frames else "—" for k in (self.down, self.up, self.close)]
        return f"| {name} | {self.clips} | {self.frames} | {' | '.join(shares)} |"


def pitch_frames(y: np.ndarray, settings: FeatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """(frame index, F0) of every voiced speech frame as the model's windows carry it; a frame in
    several windows counts once (from the first)."""
    cursor = FrameCursor(settings)
    windows = cursor.push(y) + cursor.finish()
    seen: dict[int, float] = {}
    for window in windows:
        if window.features is None:
            continue
        frames = window.first_frame + np.flatnonzero(window.speech_mask)
        voiced = voiced_frames(window.features, settings)
        log_f0s = window.features[voiced, settings.n_mfcc]  # the log2(F0 / reference) column
        for frame, log_f0 in zip(frames[voiced].tolist(), log_f0s.tolist(), strict=True):
            seen.setdefault(frame, PITCH_REFERENCE_HZ * 2.0**log_f0)
    index = np.array(sorted(seen), dtype=np.int64)
    return index, np.array([seen[i] for i in index.tolist()])


def reference_f0(y: np.ndarray, settings: FeatureSettings, frames: np.ndarray) -> np.ndarray:
    """Harvest's F0 at the centre of each frame; NaN where it calls the frame (or a neighbour) unvoiced."""
    import pyworld

    rate = settings.sample_rate
    f0, times = pyworld.harvest(y.astype(np.float64), rate, f0_floor=60.0, f0_ceil=600.0, frame_period=5.0)
    centres = (frames * settings.hop_length + settings.frame_length / 2) / rate
    voiced = np.interp(centres, times, (f0 > 0).astype(float)) > 0.99
    return np.where(voiced, np.interp(centres, times, f0), np.nan)


def sampled_recordings(root: Path, corpora: list[str], per_sex: int, seed: int) -> dict[tuple[str, str], list[Path]]:
    """Up to ``per_sex`` random recordings of each corpus and sex, loaded as training loads them."""
    from train.data import load_corpora

    recordings, _ = load_corpora([root])
    groups: dict[tuple[str, str], list[Path]] = {}
    for rec in sorted(recordings, key=lambda r: str(r.path)):
        if rec.is_speech and (not corpora or rec.corpus in corpora):
            groups.setdefault((rec.corpus, rec.label), []).append(rec.path)
    rng = random.Random(seed)
    for paths in groups.values():
        rng.shuffle(paths)
        del paths[per_sex:]
    return dict(sorted(groups.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--corpora", default="", help="comma-separated corpus names; default every corpus")
    parser.add_argument("--per-sex", type=int, default=25, help="recordings per corpus and sex (random, seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="feature settings to change, as JSON")
    args = parser.parse_args()
    try:
        import pyworld  # noqa: F401
    except ImportError:
        sys.exit("pitch_track.py needs pyworld: pip install 'gvd[train]'")
    root = args.shared / "data"
    if not root.is_dir():
        sys.exit(f"{root}: no shared corpora here (--shared)")
    settings = FeatureSettings.from_dict({**FeatureSettings().to_dict(), **json.loads(args.settings)})
    corpora = [c for c in args.corpora.split(",") if c]
    print("| corpus, sex | clips | voiced frames | octave down | octave up | within 0.1 octave |")
    print("|---|---:|---:|---:|---:|---:|")
    for (corpus, sex), files in sampled_recordings(root, corpora, args.per_sex, args.seed).items():
        tally = Tally()
        for path in files:
            y, _ = load_audio(path, settings.sample_rate)
            frames, f0 = pitch_frames(y, settings)
            if frames.size == 0:
                continue
            reference = reference_f0(y, settings, frames)
            known = np.isfinite(reference)
            tally.add(f0[known] / reference[known])
        print(tally.row(f"{corpus}, {sex}"), flush=True)


if __name__ == "__main__":
    main()
