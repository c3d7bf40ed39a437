"""Parity of the runtime front end against an earlier commit: decoded samples, frame analysis, speech
masks, window features and model probabilities must not move.

Speed work on decoding, framing and speech detection must leave model inputs as they were: the shipped
models were trained on them. This script runs the same files through the code of a reference commit
(extracted with ``git archive`` into a temporary folder and run in a subprocess) and through this
checkout, and reports the largest differences. Nothing it reads or writes is kept in the repository.

    python benchmarks/parity_frontend.py                         # bundled samples, against a680bef
    python benchmarks/parity_frontend.py --shared ../shared --per-corpus 20
    python benchmarks/parity_frontend.py --keep /tmp/ref ...      # save the reference outputs ...
    python benchmarks/parity_frontend.py --reference-dir /tmp/ref ...   # ... and reuse them

Exit status 1 when a mask differs, a decoded sample differs, or features or probabilities differ by
more than the tolerance (1e-5).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REFERENCE = "a680bef"
TOLERANCE = 1e-5
AUDIO = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".mp4"}
CHUNK_SECONDS = 0.1  # the cursor is also fed in microphone-sized blocks
# Compared exactly (decoded audio, masks) or within TOLERANCE (everything computed from them).
EXACT = ("samples", "masks", "chunked_masks", "first_frames", "chunked_first_frames", "feature_rows")
CLOSE = ("cepstra", "energy_db", "voicing", "f0", "features", "chunked_features", "p_female", "p_speech",
         "segment_p_female", "segment_p_speech", "speech_seconds")


def sample_files(shared: Path | None, per_corpus: int, seed: int) -> list[Path]:
    """The bundled samples, then ``per_corpus`` files of every corpus (half female, half male where
    the corpus has both folders) and every non-speech file."""
    files = sorted(p for p in (REPO / "models" / "samples").iterdir() if p.suffix in AUDIO)
    if shared is None:
        return files
    rng = random.Random(seed)
    for corpus in sorted(p for p in (shared / "data").iterdir() if p.is_dir()):
        groups = [corpus / sex for sex in ("female", "male") if (corpus / sex).is_dir()] or [corpus]
        for group in groups:
            found = sorted(p for p in group.rglob("*") if p.suffix.lower() in AUDIO)
            files += rng.sample(found, min(len(found), per_corpus // len(groups)))
    nonspeech = shared / "nonspeech"
    if nonspeech.is_dir():
        files += sorted(p for p in nonspeech.iterdir() if p.suffix.lower() in AUDIO)
    return files


def format_variants(folder: Path) -> list[Path]:
    """The bundled clips rewritten in other containers and sample formats, and cut short, so that
    every reader path (16-bit PCM read as integers, the others as floats, truncated files) is
    compared; written to ``folder``, which is thrown away."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("male_16k.flac", "female_44k_stereo.flac"):
        data, rate = sf.read(REPO / "models" / "samples" / name, dtype="float32")
        stem = Path(name).stem
        for fmt, subtype, ext in [("WAV", "PCM_16", "wav"), ("AIFF", "PCM_16", "aiff"), ("W64", "PCM_16", "w64"),
                                  ("FLAC", "PCM_16", "flac"), ("WAV", "PCM_24", "wav"), ("WAV", "FLOAT", "wav"),
                                  ("FLAC", "PCM_24", "flac"), ("WAV", "PCM_U8", "wav")]:
            path = folder / f"{stem}_{subtype}.{ext}"
            sf.write(path, data, rate, format=fmt, subtype=subtype)
            out.append(path)
    for path in [p for p in out if p.name.endswith(("PCM_16.wav", "PCM_16.flac", "PCM_24.flac"))]:
        cut = path.with_name(f"cut_{path.name}")
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        out.append(cut)
    return out


def _windows(windows: list, prefix: str) -> dict[str, np.ndarray]:
    features = [w.features for w in windows if w.features is not None]
    return {
        f"{prefix}masks": np.concatenate([w.speech_mask for w in windows]) if windows else np.zeros(0, bool),
        f"{prefix}first_frames": np.array([w.first_frame for w in windows], dtype=np.int64),
        f"{prefix}features": np.concatenate(features) if features else np.zeros((0, 0), np.float32),
    }


def snapshot(path: Path, detector) -> dict[str, np.ndarray]:
    """Everything the front end produces for one file, as arrays."""
    from edge.audio import load_audio
    from edge.features import analyse_frames
    from edge.pipeline import FrameCursor, window_inputs

    settings = detector.settings
    samples, _ = load_audio(path, settings.sample_rate)
    stats = analyse_frames(samples, settings)
    windows = window_inputs(samples, settings)
    cursor = FrameCursor(settings)
    step = int(CHUNK_SECONDS * settings.sample_rate)
    chunked = [w for k in range(0, samples.size, step) for w in cursor.push(samples[k : k + step])]
    chunked += cursor.finish()
    out = {"samples": samples, "cepstra": stats.cepstra, "energy_db": stats.energy_db, "voicing": stats.voicing,
           "f0": stats.f0, **_windows(windows, ""), **_windows(chunked, "chunked_")}
    features = [w.features for w in windows if w.features is not None]
    out["feature_rows"] = np.array([f.shape[0] for f in features])
    p_female, p_speech = detector.infer(features) if features else (np.zeros(0), np.zeros(0))
    out["p_female"], out["p_speech"] = p_female, p_speech
    prediction = detector.predict(path)
    nan = float("nan")
    out["segment_p_female"] = np.array([nan if s.p_female is None else s.p_female for s in prediction.segments])
    out["segment_p_speech"] = np.array([nan if s.p_speech is None else s.p_speech for s in prediction.segments])
    out["speech_seconds"] = np.array([s.speech_seconds for s in prediction.segments] + [prediction.speech_seconds])
    return out


def save(files: list[Path], folder: Path, model: str | None) -> None:
    """Write one .npz per file (or .json with the error a file raised)."""
    import edge

    detector = edge.Detector(model)
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        try:
            np.savez(folder / f"{i:05d}.npz", **snapshot(path, detector))
        except Exception as exc:  # compared as text: both sides must fail the same way
            (folder / f"{i:05d}.json").write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))


def _load(folder: Path, i: int) -> dict[str, np.ndarray] | str:
    npz = folder / f"{i:05d}.npz"
    if npz.exists():
        with np.load(npz) as data:
            return {key: data[key] for key in data.files}
    return json.loads((folder / f"{i:05d}.json").read_text())["error"]


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    a, b = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return float(np.max(np.where(both_nan, 0.0, np.abs(a - b)), initial=0.0)) if not np.any(
        np.isnan(a) != np.isnan(b)) else float("inf")


def compare(files: list[Path], reference: Path, new: Path) -> dict:
    """Largest differences per quantity over all files, and the files where anything exact differs."""
    worst = {key: 0.0 for key in EXACT + CLOSE}
    mismatched_frames = 0
    failures: list[str] = []
    errors = 0
    for i, path in enumerate(files):
        old, now = _load(reference, i), _load(new, i)
        if isinstance(old, str) or isinstance(now, str):
            errors += 1
            if old != now:
                failures.append(f"{path}: reference {old!r}, new {now!r}")
            continue
        for key in EXACT + CLOSE:
            diff = _max_abs(old[key], now[key])
            worst[key] = max(worst[key], diff)
            if diff > (0.0 if key in EXACT else TOLERANCE):
                failures.append(f"{path}: {key} differs by {diff:g}")
        for key in ("masks", "chunked_masks"):
            if old[key].shape == now[key].shape:
                mismatched_frames += int(np.sum(old[key] != now[key]))
    return {"files": len(files), "files_with_errors_on_both_sides": errors, "max_abs_diff": worst,
            "mask_mismatched_frames": mismatched_frames, "failures": failures}


def run_reference(revision: str, files: list[Path], out: Path, model: str | None) -> None:
    """Save the reference commit's outputs, running its code from a temporary extract."""
    with tempfile.TemporaryDirectory(prefix="gvd-parity-") as folder:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "edge", "models"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        listing = Path(folder) / "files.txt"
        listing.write_text("\n".join(map(str, files)))
        env = {**os.environ, "PYTHONPATH": folder}
        command = [sys.executable, __file__, "--save", str(out), "--files", str(listing)]
        subprocess.run(command + (["--model", model] if model else []), check=True, env=env, cwd=folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=REFERENCE, help=f"git revision to compare with [{REFERENCE}]")
    parser.add_argument("--reference-dir", type=Path, help="reuse reference outputs saved with --keep")
    parser.add_argument("--keep", type=Path, help="save the reference outputs here (outside the repository)")
    parser.add_argument("--shared", type=Path, help="the shared folder (data/<corpus>/..., nonspeech/)")
    parser.add_argument("--per-corpus", type=int, default=20, help="files sampled per corpus [20]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="model for the probabilities [the default]")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)  # the reference side's subprocess
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.save:
        save([Path(p) for p in args.files.read_text().splitlines()], args.save, args.model)
        return 0
    sys.path.insert(0, str(REPO))
    # Absolute paths: the reference side runs in another folder (a checkout of --reference).
    files = [f.resolve() for f in sample_files(args.shared, args.per_corpus, args.seed)]
    with tempfile.TemporaryDirectory(prefix="gvd-parity-") as scratch:
        files += format_variants(Path(scratch) / "formats")
        reference = args.reference_dir or args.keep or Path(scratch) / "reference"
        if args.reference_dir is None:
            run_reference(args.reference, files, reference, args.model)
        new = Path(scratch) / "new"
        save(files, new, args.model)
        report = compare(files, reference, new)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['files']} files ({report['files_with_errors_on_both_sides']} refused by both sides)")
        for key, value in report["max_abs_diff"].items():
            print(f"  max |diff| {key:22s} {value:.3g}" + ("  (must be 0)" if key in EXACT else ""))
        print(f"  mask frames that differ: {report['mask_mismatched_frames']}")
        for line in report["failures"][:20]:
            print("FAIL " + line)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
