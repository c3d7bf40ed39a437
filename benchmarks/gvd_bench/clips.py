"""What is measured: the bundled clips, and recordings of set lengths made from them."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

CLIP_EXTENSIONS = (".wav", ".flac", ".ogg")
MAX_CLIP_SECONDS = 6.0  # the default set is the short (3-5 s) samples; the longer ones are demos
LENGTH_RATE = 16000  # clips of set lengths are 16 kHz FLAC, so that only their length differs
STREAM_RATE = 48000  # a USB microphone's rate: resampling to 16 kHz is part of the streaming cost
_WRITE_BLOCK_SECONDS = 60.0


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in CLIP_EXTENSIONS and p.is_file())


def expand(items: tuple[Path, ...]) -> list[Path]:
    clips: list[Path] = []
    for item in items:
        clips += audio_files(item) if item.is_dir() else [item]
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        raise click.ClickException(f"clips not found: {', '.join(missing)}")
    return clips


def bundled() -> list[Path]:
    """The short sample clips shipped with the models (``samples/`` beside the manifest)."""
    import soundfile as sf

    from edge.model import models_dir

    folder = models_dir()
    if folder is None or not (folder / "samples").is_dir():
        return []
    return [p for p in audio_files(folder / "samples") if sf.info(str(p)).duration <= MAX_CLIP_SECONDS]


def duration(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def mono(path: Path, rate: int) -> np.ndarray:
    """A clip as mono float32 at ``rate`` (only to build test recordings; not a timed path)."""
    import soundfile as sf
    import soxr

    samples, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    return samples if source_rate == rate else soxr.resample(samples, source_rate, rate).astype(np.float32)


def _write_tiled(signal: np.ndarray, rate: int, seconds: float, path: Path, subtype: str) -> Path:
    """``signal`` repeated to ``seconds``, written block by block so that an hour needs no hour in memory."""
    import soundfile as sf

    total = int(round(seconds * rate))
    # A whole number of signals per block, so that consecutive blocks continue the tiling.
    block = np.tile(signal, int(np.ceil(_WRITE_BLOCK_SECONDS * rate / signal.size)))
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype=subtype) as out:
        written = 0
        while written < total:
            piece = block[: min(block.size, total - written)]
            out.write(piece)
            written += piece.size
    return path


def length_clips(clips: list[Path], lengths: tuple[float, ...], folder: Path) -> list[Path]:
    """One 16 kHz FLAC per length, made of the speech clips one after another."""
    signal = np.concatenate([mono(c, LENGTH_RATE) for c in clips])
    return [_write_tiled(signal, LENGTH_RATE, seconds, folder / f"length_{seconds:g}s.flac", "PCM_16")
            for seconds in lengths]


def stream_recording(clips: list[Path], seconds: float, folder: Path) -> Path:
    """A 48 kHz WAV of ``seconds`` made of the clips, like a USB microphone's audio."""
    signal = np.concatenate([mono(c, STREAM_RATE) for c in clips])
    return _write_tiled(signal, STREAM_RATE, seconds, folder / "stream.wav", "FLOAT")


def batch(clips: list[Path], files: int) -> list[Path]:
    """``files`` inputs for a batch run: the clips, repeated in turn."""
    return [clips[i % len(clips)] for i in range(files)]
