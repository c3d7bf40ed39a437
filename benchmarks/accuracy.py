"""End-to-end accuracy of shipped models through the runtime itself (decode -> frames -> model).

Every recording of every corpus goes through ``edge.Detector.predict`` exactly as a user's file would;
figures are per corpus, worst first, with balanced accuracy (mean of female and male recall), the
clips lost to ``no_speech``, and for non-speech folders the share correctly rejected. This measures
the shipped file, not a training-time estimate. Note that the shipped models were trained on most of
these speakers: the unseen-speaker and unseen-corpus figures come from training (speaker-disjoint
test split and leave-one-corpus-out); this script checks the runtime end to end and the non-speech
clips. ``--nonspeech`` may be given once per folder; each is reported on its own. Music no shipped
model ever heard (training keeps these packages out, ``train.nonspeech.HELD_OUT_PACKAGES``):

    python benchmarks/accuracy.py --data ../shared/data --nonspeech ../shared/nonspeech --models rnn,gru
    python benchmarks/accuracy.py --nonspeech /usr/share/games/wesnoth/1.16/data/core/music \
        --nonspeech /usr/share/planetblupi/music --models lstm,gru,rnn [--excerpt 10 --every 30]

``--excerpt S --every E`` judges S-second excerpts taken every E seconds of each non-speech file
instead of whole files (what a kiosk hears is seconds of a song, not the song).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge.files import list_audio_files

_detector = None


@dataclass(frozen=True)
class Item:
    path: str
    corpus: str
    label: str  # female | male | nonspeech
    start: float = 0.0  # an excerpt: seconds from the start of the file, and its length (0: all of it)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return Path(self.path).name + (f"@{self.start:g}s" if self.seconds else "")


NONSPEECH = "nonspeech"


@dataclass(frozen=True)
class Outcome:
    item: Item
    label: str
    reason: str | None
    error: str | None = None


def _items(data: Path | None, nonspeech: list[Path], excerpt: float = 0.0, every: float = 0.0) -> list[Item]:
    from train.data import load_corpora

    items: list[Item] = []
    if data is not None:
        recordings, _ = load_corpora([data])
        items += [Item(str(r.path), r.corpus, r.label) for r in recordings]
    for folder in nonspeech:
        for path in list_audio_files(folder):
            if not excerpt:
                items.append(Item(str(path), str(folder), NONSPEECH))
                continue
            duration = _duration(path)
            starts = [k * every for k in range(int(max(0.0, duration - excerpt) // every) + 1)]
            items += [Item(str(path), str(folder), NONSPEECH, start, excerpt) for start in starts
                      if min(excerpt, duration - start) >= 1.0]
    return items


def _duration(path: Path) -> float:
    return _decoded(str(path)).size / 16000  # decoded: a header's length can be missing or wrong


@lru_cache(maxsize=1)
def _decoded(path: str) -> np.ndarray:
    """The last file decoded (16 kHz mono): a worker takes consecutive excerpts of one file."""
    from edge.audio import load_audio

    return load_audio(path)[0]


def _init(model: str) -> None:
    global _detector
    from edge import Detector

    _detector = Detector(model)


def _run(item: Item) -> Outcome:
    from edge.errors import GvdError

    assert _detector is not None
    try:
        if item.seconds:
            samples = _decoded(item.path)
            rate = _detector.settings.sample_rate
            cut = samples[int(item.start * rate) : int((item.start + item.seconds) * rate)]
            result = _detector.predict(cut, sample_rate=rate)
        else:
            result = _detector.predict(item.path)
    except GvdError as exc:
        return Outcome(item, "error", None, str(exc))
    return Outcome(item, result.label, result.reason)


@dataclass(frozen=True)
class CorpusRow:
    corpus: str
    clips: int
    balanced_accuracy: float | None
    recall_female: float | None
    recall_male: float | None
    no_speech_rate: float
    errors: int


def summarise(outcomes: list[Outcome]) -> tuple[list[CorpusRow], dict[str, dict]]:
    """Rows of the speech corpora, worst first, and per non-speech folder what it rejected."""
    by_corpus: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_corpus[outcome.item.corpus].append(outcome)
    rows = []
    nonspeech = {}
    for corpus, group in sorted(by_corpus.items()):
        if group[0].item.label == NONSPEECH:
            rejected = [o for o in group if o.label == "no_speech"]
            gendered = [o for o in group if o.label in ("female", "male")]
            nonspeech[corpus] = {"clips": len(group), "rejected": len(rejected),
                                 "given_a_gender": sorted(o.item.name for o in gendered),
                                 "errors": sorted(o.item.name for o in group if o.label == "error")}
            continue
        recalls = {}
        for sex in ("female", "male"):
            answered = [o for o in group if o.item.label == sex and o.label in ("female", "male")]
            recalls[sex] = sum(o.label == sex for o in answered) / len(answered) if answered else None
        present = [r for r in recalls.values() if r is not None]
        rows.append(CorpusRow(corpus, len(group), sum(present) / len(present) if present else None,
                              recalls["female"], recalls["male"],
                              sum(o.label == "no_speech" for o in group) / len(group),
                              sum(o.label == "error" for o in group)))
    rows.sort(key=lambda r: (r.balanced_accuracy is None, r.balanced_accuracy or 0.0))
    return rows, nonspeech


def markdown(model: str, rows: list[CorpusRow], nonspeech: dict[str, dict]) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"### {model}", ""]
    if rows:
        lines += ["| corpus | clips | balanced acc. | female recall | male recall | no_speech | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.corpus} | {r.clips} | {pct(r.balanced_accuracy)} | {pct(r.recall_female)} | "
              f"{pct(r.recall_male)} | {pct(r.no_speech_rate)} | {r.errors} |" for r in rows]
    for folder, found in nonspeech.items():
        lines += ["", f"Non-speech `{folder}`: {found['rejected']} of {found['clips']} clips give no_speech; "
                      f"given a gender: {', '.join(found['given_a_gender']) or 'none'}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="root of labelled corpora (e.g. ../shared/data)")
    parser.add_argument("--nonspeech", type=Path, action="append", default=[],
                        help="folder of non-speech clips (e.g. ../shared/nonspeech); repeatable")
    parser.add_argument("--models", default="rnn", help="comma-separated shipped model names or .onnx paths")
    parser.add_argument("--excerpt", type=float, default=0.0,
                        help="judge excerpts of this many seconds of each non-speech file")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between excerpts (with --excerpt)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.data is None and not args.nonspeech:
        parser.error("give --data and/or --nonspeech")
    items = _items(args.data, args.nonspeech, args.excerpt, args.every)
    report = {}
    for model in args.models.split(","):
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init, initargs=(model,)) as pool:
            outcomes = list(pool.map(_run, items, chunksize=16))
        rows, nonspeech = summarise(outcomes)
        sys.stdout.write(markdown(model, rows, nonspeech) + "\n")
        report[model] = {"corpora": [asdict(r) for r in rows], "nonspeech": nonspeech}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
