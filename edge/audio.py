"""Decoding, down-mixing and resampling: any file or array in, 16 kHz mono float32 out.

WAV/FLAC/OGG go through soundfile (libsndfile); AAC/Opus/MP3/MP4 go through PyAV (FFmpeg's
libraries in a wheel, the ``[formats]`` extra), decoding packet by packet so that one damaged frame
is skipped instead of failing the file. A truncated file gives what it holds and says so in
``AudioInfo.warnings``. Resampling uses one soxr stream (:class:`ChunkResampler`) for files, arrays and
live audio alike. Long files are read in blocks, so memory stays bounded whatever their length.
:func:`sniff_suffix` is the one table of container signatures (stdin, uploads, 'damaged or not audio').
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    UnreadableFileError,
    UnsupportedFormatError,
)

SOUNDFILE_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".caf", ".w64"}
PYAV_EXTENSIONS = {".m4a", ".mp4", ".aac", ".opus", ".mp3", ".webm", ".mka", ".mkv", ".wma", ".3gp", ".amr"}
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | PYAV_EXTENSIONS
BLOCK_SECONDS = 10.0
# soxr's "HQ", as the models were trained with. Measured on the bundled clips: "MQ" saves under 10 % of
# the resampling time and moves samples by up to 1.4e-3, "VHQ" costs about 50 % more and moves them by
# up to 1.6e-3; either would change model inputs beyond 1e-5 for no audible gain.
RESAMPLE_QUALITY = "HQ"
# An axis this short is a channel axis: tells (channels, samples) arrays from (samples, channels).
MAX_CHANNELS = 32
SNIFF_BYTES = 16
# libsndfile subtypes stored as integers: their samples are finite by construction, so they skip the
# NaN/infinity scan that float and lossy data need (0.02-0.2 ms a clip, measured). PyAV's codec names are
# lower case ("pcm_s16le") and never match, so everything it decodes is still scanned.
INTEGER_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"})

# First bytes of the containers we know -> the extension whose decoder reads them.
_SIGNATURES = ((b"RIFF", ".wav"), (b"RF64", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"FORM", ".aiff"),
               (b"caff", ".caf"), (b".snd", ".au"), (b"\x1aE\xdf\xa3", ".webm"), (b"#!AMR", ".amr"),
               (b"ID3", ".mp3"))


def sniff_suffix(head: bytes) -> str | None:
    """The extension of the container whose first bytes ``head`` are (16 are enough), or None."""
    for magic, suffix in _SIGNATURES:
        if head.startswith(magic):
            return suffix
    if head[4:8] == b"ftyp":
        return ".m4a"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF0) == 0xF0 and (head[1] & 0x06) == 0:
        return ".aac"  # ADTS: frame sync with layer bits 00
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return ".mp3"  # MPEG audio frame sync
    return None


@dataclass(frozen=True)
class AudioInfo:
    """What the file was before it was turned into 16 kHz mono."""

    path: str
    format: str
    codec: str
    sample_rate: int
    channels: int
    duration: float  # as the header states it
    # Problems that did not stop decoding (e.g. a truncated file); complete once the blocks are consumed.
    warnings: list[str] = field(default_factory=list, compare=False)


def _to_float32(samples: np.ndarray) -> np.ndarray:
    """Integer PCM to [-1, 1) floats; floats pass through."""
    samples = np.asarray(samples)
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype.kind == "i":  # one pass: scaling by a power of two is exact, as the division was
        return np.multiply(samples, np.float32(2.0 ** (1 - 8 * samples.dtype.itemsize)), dtype=np.float32)
    if samples.dtype.kind == "u":
        half = float(2 ** (8 * samples.dtype.itemsize - 1))
        return (samples.astype(np.float32) - half) / half
    raise InvalidSamplesError(f"unsupported sample type {samples.dtype}")


def _channels_last(samples: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels); a (channels, samples) array is transposed, a shape that is
    neither is refused (a short axis is the channel axis, so (2, 48000) is stereo, not 48000 channels)."""
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise InvalidSamplesError(f"expected audio of shape (samples,) or (samples, channels), got {samples.shape}")
    rows, columns = samples.shape
    if rows <= MAX_CHANNELS < columns:
        return samples.T
    if columns > MAX_CHANNELS:
        raise InvalidSamplesError(
            f"audio of shape {samples.shape} is ambiguous: neither axis is a channel axis (at most "
            f"{MAX_CHANNELS}); pass (samples, channels)")
    return samples


def _downmix(samples: np.ndarray) -> np.ndarray:
    """(frames, channels), (channels, frames) or (frames,) to mono by averaging channels."""
    samples = _channels_last(samples)
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    # A matrix-vector product: 3x faster than mean(axis=1) on interleaved frames, same values within 1e-7.
    weights = np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    return samples.astype(np.float32, copy=False) @ weights


def _check_finite(samples: np.ndarray, name: str | None = None) -> None:
    if not np.isfinite(samples).all():
        prefix = f"{name}: " if name else ""
        raise InvalidSamplesError(f"{prefix}the audio contains NaN or infinite samples")


class _SoxrPool:
    """Idle soxr streams by (in rate, out rate, quality), handed out to one user at a time.

    soxr designs its filter on a stream's first chunk: a fresh stream per file cost 0.35 ms more
    for a 3.4 s clip at 48 kHz than one cleared and reused (1.14 against 0.79 ms, measured); the
    output of a cleared stream is identical, sample for sample (tested).
    """

    def __init__(self, keep: int = 2):
        self.keep = keep  # idle streams kept per key: one per thread that is resampling, in practice
        self._idle: dict[tuple[int, int, str], list[Any]] = {}
        self._lock = threading.Lock()

    def take(self, in_rate: int, out_rate: int, quality: str) -> Any:
        with self._lock:
            idle = self._idle.get((in_rate, out_rate, quality))
            if idle:
                return idle.pop()
        import soxr

        return soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)

    def give_back(self, stream: Any, in_rate: int, out_rate: int, quality: str) -> None:
        stream.clear()
        with self._lock:
            idle = self._idle.setdefault((in_rate, out_rate, quality), [])
            if len(idle) < self.keep:
                idle.append(stream)


_SOXR = _SoxrPool()


class ChunkResampler:
    """Streaming soxr resampler to ``out_rate`` that follows the input rate (a new device may bring a
    new rate); passes audio through untouched when the rates match. Files, arrays and streams all
    resample through it, so they agree sample for sample."""

    def __init__(self, out_rate: int, quality: str = RESAMPLE_QUALITY):
        self.out_rate = out_rate
        self.quality = quality
        self.in_rate: int | None = None
        self._stream: Any = None

    def __call__(self, mono: np.ndarray, rate: int) -> np.ndarray:
        parts = []
        if rate != self.in_rate:
            parts.append(self.finish())
            self.in_rate = rate
            if rate != self.out_rate:
                self._stream = _SOXR.take(rate, self.out_rate, self.quality)
        if self._stream is None:
            parts.append(mono)
        else:
            parts.append(self._stream.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32)))
        return np.concatenate(parts) if len(parts) > 1 and parts[0].size else parts[-1]

    def finish(self) -> np.ndarray:
        """The samples soxr still holds back (its filter delay); the stream then goes back to the pool."""
        out = np.zeros(0, dtype=np.float32)
        if self._stream is not None and self.in_rate is not None:
            out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            _SOXR.give_back(self._stream, self.in_rate, self.out_rate, self.quality)
        self._stream = None
        self.in_rate = None
        return out


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Band-limited resampling of a whole mono signal (the same soxr stream as files and live audio)."""
    samples = np.asarray(samples, dtype=np.float32)
    if in_rate == out_rate:
        return samples
    resampler = ChunkResampler(out_rate)
    head = resampler(samples, in_rate)
    tail = resampler.finish()
    return np.concatenate([head, tail]) if tail.size else head


def prepare_array(samples: np.ndarray, sample_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Validate, down-mix and resample an in-memory signal of shape (samples,) or (samples, channels)
    ((channels, samples) is recognised when one axis is at most 32 long)."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InvalidSamplesError(f"sample rate must be a positive integer, got {sample_rate!r}")
    samples = _to_float32(samples)
    if samples.size == 0:
        raise EmptyAudioError("the audio holds no samples")
    _check_finite(samples)
    return resample(_downmix(samples), int(sample_rate), target_rate)


def _read_head(path: Path) -> bytes:
    """The first bytes of a file; the one place that says a file cannot be read at all."""
    try:
        with open(path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    except PermissionError:
        raise UnreadableFileError(f"{path.name}: permission denied (the file cannot be read)") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None


def _looks_like_audio(head: bytes) -> bool:
    """Tells 'not audio' from 'damaged audio' for a file no decoder could open."""
    return sniff_suffix(head) is not None


def _libsndfile_reason(exc: Exception) -> str:
    """libsndfile's own words, without the (possibly temporary) path it prefixes them with."""
    return str(getattr(exc, "error_string", None) or exc).strip()


def _wav_promised_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header promises (its data chunk size), None when it does not say."""
    import struct

    with open(path, "rb") as handle:
        if handle.read(12)[8:12] != b"WAVE":
            return None
        block_align = None
        for _ in range(64):  # chunks before 'data': fmt, LIST, fact, ...
            header = handle.read(8)
            if len(header) < 8:
                return None
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                fmt = handle.read(min(size, 16))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                handle.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
            elif chunk == b"data":
                # 0 and 0xFFFFFFFF are what streaming writers leave when they cannot seek back.
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                handle.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _truncation_warning(promised: int, present: int, rate: int) -> str:
    return f"truncated: the header promises {promised / rate:.2f} s, the file holds {present / rate:.2f} s"


def _soundfile_info(path: Path, handle) -> AudioInfo:
    rate = handle.samplerate
    info = AudioInfo(str(path), handle.format, handle.subtype, rate, handle.channels,
                     handle.frames / float(rate) if rate else 0.0)
    if handle.format == "WAV":
        # libsndfile trims the frame count of a cut WAV to what the file holds; the header still says more.
        promised = _wav_promised_frames(path)
        if promised is not None and promised > handle.frames:
            info.warnings.append(_truncation_warning(promised, handle.frames, rate))
    return info


# The platform's own libsndfile decodes FLAC 23-27 % faster than the copy inside the soundfile wheel
# (Debian 12's 1.2.0 with its libFLAC 1.4.2 against the wheel's 1.2.2 with a libFLAC 1.4.3 built
# without the same optimisation, on the bundled clips), and it gets the distribution's security
# updates; gvd uses it where it exists. GVD_LIBSNDFILE=bundled keeps the wheel's copy, a path names
# another library.
LIBSNDFILE_ENV = "GVD_LIBSNDFILE"
_LIBSNDFILE_LOCK = threading.Lock()
_libsndfile_problem: str | None = None  # set when GVD_LIBSNDFILE names a library that does not load
_libsndfile_chosen = False


def soundfile_module():
    """The soundfile module, on the libsndfile chosen above (switched once, before the first file)."""
    global _libsndfile_chosen, _libsndfile_problem
    import soundfile

    with _LIBSNDFILE_LOCK:
        if not _libsndfile_chosen:
            choice = os.environ.get(LIBSNDFILE_ENV, "")
            name = choice if choice not in ("", "system") else _system_libsndfile()
            if choice != "bundled" and name:
                try:
                    library = soundfile._ffi.dlopen(name)
                    library.sf_version_string()  # a libsndfile, not some other library of that name
                except (OSError, AttributeError):
                    if choice:  # asked for by name: say so on every file, never fall back silently
                        _libsndfile_problem = f"{LIBSNDFILE_ENV}={choice}: not a libsndfile that loads"
                else:
                    soundfile._snd = library  # every soundfile call goes through this one handle
            _libsndfile_chosen = True
    if _libsndfile_problem:
        raise UnreadableFileError(_libsndfile_problem)
    return soundfile


def _system_libsndfile() -> str | None:
    """Path of the distribution's libsndfile on Linux, or None. By path: the wheel's copy is loaded
    already under the same soname, so ``dlopen("libsndfile.so.1")`` would return that one, and
    ``ctypes.util.find_library`` runs ldconfig (28 ms)."""
    if not sys.platform.startswith("linux"):
        return None
    import platform

    machine = platform.machine()
    triplets = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "armv7l": "arm-linux-gnueabihf"}
    folders = [f"/usr/lib/{triplets[machine]}", f"/lib/{triplets[machine]}"] if machine in triplets else []
    for folder in (*folders, "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        candidate = os.path.join(folder, "libsndfile.so.1")
        if os.path.exists(candidate):
            return candidate
    return None


def libsndfile_version() -> str:
    """The version string of the libsndfile gvd decodes with."""
    sf = soundfile_module()
    return sf._ffi.string(sf._snd.sf_version_string()).decode("ascii", "replace")


def _frames_before_error(handle, decoded: int, buffer_frames: int) -> int:
    """Frames of the failed read that libsndfile did decode (it fills the buffer up to the bad frame)."""
    reached = handle.tell()
    return reached - decoded if decoded <= reached <= decoded + buffer_frames else 0


def _soundfile_read(path: Path, handle, info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    sf = soundfile_module()

    rate, stated = handle.samplerate, handle.frames
    # Uncompressed 16-bit PCM is read as int16 and scaled here (_to_float32: x / 32768, exactly
    # libsndfile's float read, tested on every value): its own conversion took 7x the time of the
    # int16 read for WAV (0.44 against 0.06 ms for 13 s, measured). FLAC decoding costs the same
    # either way, so it keeps the single float buffer.
    pcm16 = handle.subtype == "PCM_16" and handle.format != "FLAC"
    decoded = 0
    with handle:
        while True:
            # Read straight into a fresh buffer: on a decoding error libsndfile has already filled
            # it up to the frame it choked on, and tell() says how far that was.
            out = np.empty((min(block_frames, max(stated - decoded, 1)), handle.channels),
                           np.int16 if pcm16 else np.float32)
            try:
                count = len(handle.read(out=out))
            except (sf.LibsndfileError, RuntimeError) as exc:
                count = _frames_before_error(handle, decoded, len(out))
                if decoded + count == 0:
                    reason = _libsndfile_reason(exc)
                    raise CorruptAudioError(f"{path.name}: damaged audio file ({reason})") from None
                info.warnings.append(
                    f"truncated or damaged: decoding stopped at {(decoded + count) / rate:.2f} s of "
                    f"{stated / rate:.2f} s ({_libsndfile_reason(exc)})")
                if count:
                    yield _to_float32(out[:count])
                return
            if not count:
                break
            decoded += count
            yield _to_float32(out[:count])
    if 0 < decoded < stated:
        info.warnings.append(_truncation_warning(stated, decoded, rate))


def _soundfile_blocks(path: Path, block_seconds: float):
    sf = soundfile_module()

    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        return None, exc
    info = _soundfile_info(path, handle)
    block_frames = max(1, int(handle.samplerate * block_seconds))
    return info, _soundfile_read(path, handle, info, block_frames)


def _open_container(path: Path, head: bytes):
    try:
        import av
    except ImportError:
        raise UnsupportedFormatError(
            f"{path.name}: {path.suffix or 'this'} files need the [formats] extra: pip install 'gvd[formats]'"
        ) from None
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise (CorruptAudioError if _looks_like_audio(head) else NotAudioError)(
            f"{path.name}: not a readable audio file ({exc.__class__.__name__})"
        ) from exc
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path.name}: the file has no audio stream")
    return container


def _pyav_info(path: Path, container, stream) -> AudioInfo:
    rate = stream.codec_context.sample_rate or stream.rate
    channels = stream.codec_context.channels
    if stream.duration and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = container.duration / 1e6 if container.duration else 0.0
    return AudioInfo(str(path), container.format.name, stream.codec_context.name, int(rate or 0),
                     int(channels or 0), duration)


def _frame_samples(frame) -> np.ndarray:
    """One decoded frame as (samples, channels) float32."""
    data = _to_float32(frame.to_ndarray())
    if data.ndim == 2 and frame.format.is_planar:
        return data.T  # (channels, samples) -> (samples, channels)
    if data.ndim == 2:
        return data.reshape(-1, len(frame.layout.channels))
    return data


def _pyav_read(container, stream, info: AudioInfo) -> Iterator[np.ndarray]:
    import av

    skipped = trailing = 0  # undecodable packets; those since the last good one
    with container:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                skipped += 1
                trailing += 1
                continue  # a damaged frame: skip it, keep the rest of the recording
            if packet.size:
                trailing = 0
            for frame in frames:
                yield _frame_samples(frame)
    # One bad packet at the very end is a trailing tag or encoder padding in many real MP3s, not damage.
    if skipped > (1 if trailing == 1 else 0):
        info.warnings.append(f"damaged: {skipped} undecodable packet(s) skipped")


def _pyav_blocks(path: Path, head: bytes):
    container = _open_container(path, head)
    stream = container.streams.audio[0]
    info = _pyav_info(path, container, stream)
    return info, _pyav_read(container, stream, info)


def open_audio(path: str | os.PathLike, block_seconds: float = BLOCK_SECONDS) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Open a file and return its description and an iterator of (frames, channels) float32 blocks."""
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except PermissionError:  # a folder on the way cannot be entered
        raise UnreadableFileError(f"{path}: permission denied (a folder on its path cannot be entered)") from None
    if not exists:
        raise FileNotFoundError(f"{path}: no such file")
    if is_dir:
        raise IsADirectoryError(f"{path}: is a folder, not an audio file")
    head = _read_head(path)
    if not head:
        raise EmptyAudioError(f"{path.name}: the file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in PYAV_EXTENSIONS:
        info, blocks = _soundfile_blocks(path, block_seconds)
        if info is not None:
            return info, blocks
        reason = _libsndfile_reason(blocks)
        if suffix in SOUNDFILE_EXTENSIONS or not _looks_like_audio(head):
            if _looks_like_audio(head):
                raise CorruptAudioError(f"{path.name}: damaged audio file ({reason})")
            raise NotAudioError(f"{path.name}: not an audio file ({reason})")
    return _pyav_blocks(path, head)


def iter_mono(path: str | os.PathLike, target_rate: int = 16000, block_seconds: float = BLOCK_SECONDS,
              timings: dict[str, float] | None = None) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Like :func:`open_audio`, but the blocks are mono float32 at ``target_rate``.

    ``timings``, when given, accumulates seconds spent under "decode" and "resample". The returned
    ``AudioInfo.warnings`` is complete once the blocks have been consumed.
    """
    tick = time.perf_counter()
    name = Path(path).name
    info, blocks = open_audio(path, block_seconds)
    if info.sample_rate <= 0:
        raise CorruptAudioError(f"{name}: the file does not state a sample rate")
    resampler = ChunkResampler(target_rate)
    scan = info.codec not in INTEGER_SUBTYPES

    def spent(stage: str, since: float) -> float:
        now = time.perf_counter()
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + now - since
        return now

    spent("decode", tick)

    def mono_blocks():
        total = 0
        tick = time.perf_counter()
        for block in blocks:
            if scan:
                _check_finite(block, name)
            mono = _downmix(block)
            total += mono.size
            tick = spent("decode", tick)
            out = resampler(mono, info.sample_rate)
            tick = spent("resample", tick)
            if out.size:
                yield out
                tick = time.perf_counter()
        if total == 0:
            raise EmptyAudioError(f"{name}: the file holds no audio samples")
        tick = time.perf_counter()
        out = resampler.finish()
        spent("resample", tick)
        if out.size:
            yield out

    return info, mono_blocks()


def load_audio(path: str | os.PathLike, target_rate: int = 16000) -> tuple[np.ndarray, AudioInfo]:
    """Decode a whole file to mono float32 at ``target_rate``."""
    info, blocks = iter_mono(path, target_rate)
    parts = list(blocks)
    if len(parts) == 1:
        return parts[0], info
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), info
