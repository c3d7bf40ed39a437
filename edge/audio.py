"""Decoding, down-mixing and resampling: any file or array in, 16 kHz mono float32 out.

WAV/FLAC/OGG go through soundfile (libsndfile); AAC/Opus/MP3/MP4 go through PyAV (FFmpeg's
libraries in a wheel, the ``[formats]`` extra), decoding packet by packet so that one damaged frame
is skipped instead of failing the file. Resampling uses soxr, a band-limited high-quality
resampler. Long files are read in blocks, so memory stays bounded whatever their length.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import (
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    UnsupportedFormatError,
)

SOUNDFILE_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".caf", ".w64"}
PYAV_EXTENSIONS = {".m4a", ".mp4", ".aac", ".opus", ".mp3", ".webm", ".mka", ".mkv", ".wma", ".3gp", ".amr"}
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | PYAV_EXTENSIONS
BLOCK_SECONDS = 10.0


@dataclass(frozen=True)
class AudioInfo:
    """What the file was before it was turned into 16 kHz mono."""

    path: str
    format: str
    codec: str
    sample_rate: int
    channels: int
    duration: float


def _to_float32(samples: np.ndarray) -> np.ndarray:
    """Integer PCM to [-1, 1) floats; floats pass through."""
    samples = np.asarray(samples)
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype.kind == "i":
        return (samples.astype(np.float32) / float(2 ** (8 * samples.dtype.itemsize - 1))).astype(np.float32)
    if samples.dtype.kind == "u":
        half = float(2 ** (8 * samples.dtype.itemsize - 1))
        return ((samples.astype(np.float32) - half) / half).astype(np.float32)
    raise InvalidSamplesError(f"unsupported sample type {samples.dtype}")


def _downmix(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) to mono by averaging channels."""
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise InvalidSamplesError(f"expected audio of shape (samples,) or (samples, channels), got {samples.shape}")
    return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]


def _check_finite(samples: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(samples)):
        raise InvalidSamplesError(f"{where} contains NaN or infinite samples")


class _Resampler:
    """Streaming soxr resampler; passes audio through untouched when the rates already match."""

    def __init__(self, in_rate: int, out_rate: int):
        self.passthrough = in_rate == out_rate
        if not self.passthrough:
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        if self.passthrough:
            return mono
        return self._stream.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=last)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Band-limited resampling of a mono signal (soxr, high quality)."""
    if in_rate == out_rate:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(samples, dtype=np.float32), in_rate, out_rate, quality="HQ").astype(np.float32)


def prepare_array(samples: np.ndarray, sample_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Validate, down-mix and resample an in-memory signal of shape (samples,) or (samples, channels)."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InvalidSamplesError(f"sample rate must be a positive integer, got {sample_rate!r}")
    samples = _to_float32(samples)
    if samples.size == 0:
        raise EmptyAudioError("the audio holds no samples")
    _check_finite(samples, "the audio")
    return resample(_downmix(samples), int(sample_rate), target_rate)


def _looks_like_audio(path: Path) -> bool:
    """Cheap sniff of the first bytes for containers we know, to tell 'not audio' from 'damaged'."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    signatures = (b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM", b"\x1aE\xdf\xa3", b".snd", b"caff")
    if head.startswith(signatures) or head[4:8] == b"ftyp":
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync


def _soundfile_blocks(path: Path, block_frames: int):
    import soundfile as sf

    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        return None, exc
    info = AudioInfo(str(path), handle.format, handle.subtype, handle.samplerate, handle.channels,
                     handle.frames / float(handle.samplerate) if handle.samplerate else 0.0)

    def blocks():
        with handle:
            while True:
                try:
                    data = handle.read(block_frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise CorruptAudioError(f"{path.name}: decoding failed part-way: {exc}") from exc
                if not len(data):
                    return
                yield data

    return info, blocks()


def _pyav_blocks(path: Path):
    try:
        import av
    except ImportError:
        raise UnsupportedFormatError(
            f"{path.name}: {path.suffix or 'this'} files need the [formats] extra: pip install 'gvd[formats]'"
        ) from None
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise (CorruptAudioError if _looks_like_audio(path) else NotAudioError)(
            f"{path.name}: not a readable audio file ({exc.__class__.__name__})"
        ) from exc
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path.name}: the file has no audio stream")
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    channels = stream.codec_context.channels
    duration = float(stream.duration * stream.time_base) if stream.duration else (
        container.duration / 1e6 if container.duration else 0.0)
    info = AudioInfo(str(path), container.format.name, stream.codec_context.name, int(rate or 0),
                     int(channels or 0), duration)

    def blocks():
        with container:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged frame: skip it, keep the rest of the recording
                for frame in frames:
                    data = _to_float32(frame.to_ndarray())
                    if data.ndim == 2 and frame.format.is_planar:
                        data = data.T  # (channels, samples) -> (samples, channels)
                    elif data.ndim == 2:
                        data = data.reshape(-1, len(frame.layout.channels))
                    yield data

    return info, blocks()


def open_audio(path: str | os.PathLike, block_seconds: float = BLOCK_SECONDS) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Open a file and return its description and an iterator of (frames, channels) float32 blocks."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path.name}: the file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in PYAV_EXTENSIONS:
        info, blocks = _soundfile_blocks(path, int(48000 * block_seconds))
        if info is not None:
            return info, blocks
        soundfile_error = blocks
        if suffix in SOUNDFILE_EXTENSIONS or not _looks_like_audio(path):
            kind = CorruptAudioError if _looks_like_audio(path) else NotAudioError
            raise kind(f"{path.name}: {'damaged audio file' if kind is CorruptAudioError else 'not an audio file'} "
                       f"({soundfile_error})")
    return _pyav_blocks(path)


def iter_mono(path: str | os.PathLike, target_rate: int = 16000, block_seconds: float = BLOCK_SECONDS,
              timings: dict[str, float] | None = None) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Like :func:`open_audio`, but the blocks are mono float32 at ``target_rate``.

    ``timings``, when given, accumulates seconds spent under "decode" and "resample".
    """
    tick = time.perf_counter()
    info, blocks = open_audio(path, block_seconds)
    if info.sample_rate <= 0:
        raise CorruptAudioError(f"{Path(path).name}: the file does not state a sample rate")
    resampler = _Resampler(info.sample_rate, target_rate)

    def spent(stage: str, since: float) -> float:
        now = time.perf_counter()
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + now - since
        return now

    spent("decode", tick)

    def mono_blocks():
        total = 0
        pending: np.ndarray | None = None
        tick = time.perf_counter()
        for block in blocks:
            _check_finite(block, Path(path).name)
            mono = _downmix(block)
            total += mono.size
            tick = spent("decode", tick)
            if pending is not None:
                out = resampler(pending)
                tick = spent("resample", tick)
                if out.size:
                    yield out
                    tick = time.perf_counter()
            pending = mono
        if total == 0:
            raise EmptyAudioError(f"{Path(path).name}: the file holds no audio samples")
        tick = time.perf_counter()
        out = resampler(pending, last=True)
        spent("resample", tick)
        if out.size:
            yield out

    return info, mono_blocks()


def load_audio(path: str | os.PathLike, target_rate: int = 16000) -> tuple[np.ndarray, AudioInfo]:
    """Decode a whole file to mono float32 at ``target_rate``."""
    info, blocks = iter_mono(path, target_rate)
    parts = list(blocks)
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), info
