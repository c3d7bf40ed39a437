"""Labelled corpora, duplicate handling, and splits that never put one speaker on both sides.

A corpus is a list of :class:`Recording` (file, label, speaker, corpus). Three adapters read the
shared corpora (speaker and label from their naming), and :func:`load_folder` reads any
``<root>/<label>/**`` folder (labels female/male or cewe/cowo, optional ``speakers.csv`` with
``file,label,speaker``). Exact duplicates (same bytes) are dropped; recordings known to be the same
audio in two formats are merged into one speaker group so a split can never separate them.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edge.files import list_audio_files, sha256_file

NONSPEECH = "nonspeech"  # the label of music, noise and other sounds (speech detector training)
LABEL_ALIASES = {"female": "female", "male": "male", "cewe": "female", "cowo": "male", "f": "female", "m": "male"}
SHARED_CORPORA = ("indonesian", "ravdess", "urdu")
SPLITS = ("train", "val", "test")
# Corpora of children's voices: boys and girls overlap before puberty; reported apart from adults.
CHILDREN_SUFFIX = "_children"
# Leave-one-corpus-out units: small corpora are held out together with others of their kind.
LOCO_GROUPS = {
    "sanskrit": "read_small", "bangla": "read_small", "polish": "read_small", "thai_class": "read_small",
    "arctic": "read_small", "hindi_digits": "digits", "spanish_digits": "digits",
}


class DataError(ValueError):
    """A corpus folder or its speakers.csv cannot be read as labelled recordings."""


@dataclass(frozen=True)
class Recording:
    path: Path
    label: str  # "female" | "male"
    speaker: str  # unique within its corpus
    corpus: str
    sha256: str = ""

    @property
    def y(self) -> int:
        """1 for female (the model's positive class, ``p_female``), 0 for male, -1 for non-speech."""
        return -1 if self.label == NONSPEECH else int(self.label == "female")

    @property
    def is_speech(self) -> bool:
        return self.label != NONSPEECH

    @property
    def is_child(self) -> bool:
        return self.corpus.endswith(CHILDREN_SUFFIX)

    @property
    def loco_group(self) -> str:
        """The unit a leave-one-corpus-out fold holds out."""
        return LOCO_GROUPS.get(self.corpus, self.corpus)

    @property
    def format(self) -> str:
        return self.path.suffix.lower().lstrip(".")

    @property
    def group(self) -> str:
        """The unit of every split: one speaker of one corpus."""
        return f"{self.corpus}/{self.speaker}"

    @property
    def key(self) -> str:
        return f"{self.corpus}/{self.path.name}"


def _audio_files(folder: Path) -> list[Path]:
    try:
        return list_audio_files(folder)
    except OSError as exc:  # an unreadable sub-folder would otherwise leave recordings out unnoticed
        raise DataError(f"{exc.filename or folder}: cannot be read ({exc.strerror or exc})") from exc


def normalise_label(name: str) -> str:
    label = LABEL_ALIASES.get(name.strip().lower())
    if label is None:
        raise DataError(f"unknown label {name!r}; expected one of {sorted(LABEL_ALIASES)}")
    return label


def _read_speakers_csv(root: Path) -> dict[str, tuple[str, str]]:
    """``file -> (label, speaker)`` from ``<root>/speakers.csv``; file paths relative to root."""
    path = root / "speakers.csv"
    if not path.is_file():
        return {}
    table: dict[str, tuple[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "label", "speaker"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; need file,label,speaker")
        for line, row in enumerate(reader, start=2):
            if not row["file"] or not row["speaker"]:
                raise DataError(f"{path}:{line}: empty file or speaker")
            table[row["file"].strip().replace("\\", "/")] = (normalise_label(row["label"]), row["speaker"].strip())
    return table


def load_folder(root: str | Path, corpus: str | None = None) -> list[Recording]:
    """``<root>/<label>/**`` with label folders female/male or cewe/cowo; speakers from speakers.csv.

    A file that speakers.csv does not list is its own speaker (the cautious choice: it can only
    make the split stricter). A label in speakers.csv that contradicts the folder is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    corpus = corpus or root.name
    speakers = _read_speakers_csv(root)
    recordings = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.lower() not in LABEL_ALIASES:
            continue
        label = normalise_label(folder.name)
        for path in _audio_files(folder):
            rel = path.relative_to(root).as_posix()
            listed_label, speaker = speakers.get(rel, (label, f"file:{rel}"))
            if listed_label != label:
                raise DataError(f"{root / 'speakers.csv'}: {rel} is labelled {listed_label} but lies in {folder.name}/")
            recordings.append(Recording(path, label, speaker, corpus))
    if not recordings:
        raise DataError(f"{root}: no audio under label folders ({'/'.join(sorted(LABEL_ALIASES))})")
    return recordings


def load_indonesian(root: str | Path) -> list[Recording]:
    """cewe/ and cowo/ with speakers.csv (several files of one speaker share an id)."""
    return load_folder(root, corpus="indonesian")


_RAVDESS = re.compile(r"^\d\d-\d\d-\d\d-\d\d-\d\d-\d\d-(\d\d)$")


def load_ravdess(root: str | Path) -> list[Recording]:
    """Actor_NN/*.flac; the actor is the last field of the name: odd = male, even = female."""
    root = Path(root)
    recordings = []
    for path in _audio_files(root):
        match = _RAVDESS.match(path.stem)
        if not match:
            raise DataError(f"{path}: not a RAVDESS name (NN-NN-NN-NN-NN-NN-AA)")
        actor = int(match.group(1))
        recordings.append(Recording(path, "male" if actor % 2 else "female", f"actor{actor:02d}", "ravdess"))
    if not recordings:
        raise DataError(f"{root}: no RAVDESS recordings")
    return recordings


_URDU = re.compile(r"^S([MF])(\d+)_", re.IGNORECASE)


def load_urdu(root: str | Path) -> list[Recording]:
    """<Emotion>/S{M,F}<n>_...: SM = male, SF = female, the speaker is the first field."""
    root = Path(root)
    recordings = []
    for path in _audio_files(root):
        match = _URDU.match(path.name)
        if not match:
            raise DataError(f"{path}: not an URDU-Dataset name (SM1_..., SF3_...)")
        sex, number = match.group(1).upper(), int(match.group(2))
        recordings.append(Recording(path, "male" if sex == "M" else "female", f"S{sex}{number}", "urdu"))
    if not recordings:
        raise DataError(f"{root}: no URDU-Dataset recordings")
    return recordings


ADAPTERS = {"indonesian": load_indonesian, "ravdess": load_ravdess, "urdu": load_urdu}


def is_corpus(folder: Path) -> bool:
    """A corpus folder: a known adapter's, or label folders (female/male, cewe/cowo) beside speakers.csv."""
    if folder.name in ADAPTERS:
        return True
    return (folder / "speakers.csv").is_file() and any(
        (folder / name).is_dir() for name in LABEL_ALIASES)


def load_corpus(folder: Path) -> list[Recording]:
    adapter = ADAPTERS.get(folder.name)
    return adapter(folder) if adapter else load_folder(folder)


def load_path(path: str | Path) -> list[Recording]:
    """One ``--data`` argument: a root of corpora (every corpus folder in it), one corpus, or a label folder."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    children = sorted(p for p in path.iterdir() if p.is_dir())
    corpora = [p for p in children if is_corpus(p)]
    if corpora and not any(p.name.lower() in LABEL_ALIASES for p in children):
        recordings = []
        for folder in corpora:
            recordings += load_corpus(folder)
        return recordings
    return load_corpus(path)


def dedupe(recordings: Iterable[Recording]) -> tuple[list[Recording], list[tuple[Recording, Recording]]]:
    """Hash every file; keep the first of each set of byte-identical files.

    Returns the kept recordings (with ``sha256`` filled in) and the dropped (duplicate, kept) pairs.
    """
    kept: dict[str, Recording] = {}
    dropped = []
    for rec in recordings:
        digest = rec.sha256 or sha256_file(rec.path)
        rec = replace(rec, sha256=digest)
        if digest in kept:
            dropped.append((rec, kept[digest]))
            continue
        kept[digest] = rec
    return list(kept.values()), dropped


def load_corpora(paths: Sequence[str | Path]) -> tuple[list[Recording], list[tuple[Recording, Recording]]]:
    """Every ``--data`` path, merged and de-duplicated by content hash."""
    recordings: list[Recording] = []
    for path in paths:
        recordings += load_path(path)
    return dedupe(recordings)


def merge_groups(recordings: Sequence[Recording], same_audio: Iterable[tuple[str, str]]) -> list[Recording]:
    """Give recordings that hold the same audio (pairs of ``Recording.key``) one speaker id.

    Used for near-duplicates found after decoding (the same recording in two formats), so that a
    speaker split keeps them on one side.
    """
    by_key = {rec.key: rec for rec in recordings}
    parent: dict[str, str] = {}

    def find(group: str) -> str:
        while parent.get(group, group) != group:
            group = parent[group]
        return group

    for a, b in same_audio:
        if a in by_key and b in by_key and by_key[a].corpus == by_key[b].corpus:
            ra, rb = find(by_key[a].group), find(by_key[b].group)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    out = []
    for rec in recordings:
        root = find(rec.group)
        out.append(rec if root == rec.group else replace(rec, speaker=root.split("/", 1)[1]))
    return out


def manifest(recordings: Sequence[Recording]) -> list[dict]:
    """The data manifest: one row per file with its hash, label, speaker and corpus."""
    return [
        {"corpus": r.corpus, "file": r.path.name, "path": str(r.path), "sha256": r.sha256, "label": r.label,
         "speaker": r.speaker}
        for r in sorted(recordings, key=lambda r: (r.corpus, str(r.path)))
    ]


def manifest_sha256(recordings: Sequence[Recording]) -> str:
    """One hash for the whole training set: the sorted (corpus, file hash, label) rows."""
    rows = sorted(f"{r.corpus}\t{r.sha256}\t{r.label}" for r in recordings)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def speaker_split(
    recordings: Sequence[Recording],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, list[Recording]]:
    """Split by speaker, per corpus and label, so every side sees both genders of every corpus.

    Speakers (never files or windows) are shuffled with ``seed`` and dealt out by fraction; each
    side that has a non-zero fraction gets at least one speaker of a (corpus, label) stratum
    when the stratum has enough speakers.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    strata: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rec in recordings:
        strata[(rec.corpus, rec.label)].add(rec.group)
    side_of: dict[str, str] = {}
    rng = random.Random(seed)
    for stratum in sorted(strata):
        groups = sorted(strata[stratum])
        rng.shuffle(groups)
        n = len(groups)
        n_val = round(n * fractions[1])
        n_test = round(n * fractions[2])
        # Small strata: still give val/test one speaker each if the fraction asks for any.
        if fractions[1] > 0 and n_val == 0 and n >= 3:
            n_val = 1
        if fractions[2] > 0 and n_test == 0 and n >= 3:
            n_test = 1
        n_train = n - n_val - n_test
        for i, group in enumerate(groups):
            side_of[group] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    out: dict[str, list[Recording]] = {side: [] for side in SPLITS}
    for rec in recordings:
        out[side_of[rec.group]].append(rec)
    return out


def loco_folds(recordings: Sequence[Recording], val_fraction: float = 0.1, seed: int = 0,
               heldout_nonspeech: Sequence[str] = ()) -> list[dict]:
    """Leave-one-corpus-out: for each adult corpus (or group of small ones), train (and validate) on
    the others, test on it. Children and non-speech recordings stay in training in every fold (the
    children are evaluated separately), except the sources of the non-speech corpora named in
    ``heldout_nonspeech``: each source (a recording and its pieces) is held out in one fold, dealt
    round-robin, so every such clip is judged by a model that never heard its source
    (``nonspeech_test``).

    Validation speakers come from the training corpora only; the held-out corpus is never seen.
    """
    groups = sorted({r.loco_group for r in recordings if r.is_speech and not r.is_child})
    if len(groups) < 2:
        raise ValueError("leave-one-corpus-out needs at least two corpora")
    sources = sorted({r.group for r in recordings if not r.is_speech and r.corpus in heldout_nonspeech})
    fold_of_source = {source: i % len(groups) for i, source in enumerate(sources)}
    folds = []
    for i, held_out in enumerate(groups):
        nonspeech_test = [r for r in recordings if fold_of_source.get(r.group) == i]
        rest = [r for r in recordings if (r.loco_group != held_out or not r.is_speech or r.is_child)
                and fold_of_source.get(r.group, -1) != i]
        split = speaker_split(rest, (1.0 - val_fraction, val_fraction, 0.0), seed=seed)
        folds.append({
            "held_out": held_out,
            "train": split["train"],
            "val": split["val"],
            "test": [r for r in recordings if r.loco_group == held_out and r.is_speech and not r.is_child],
            "nonspeech_test": nonspeech_test,
        })
    return folds
