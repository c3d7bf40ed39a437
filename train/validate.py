"""``gvd data validate ROOT``: what every audio file under a folder really holds, before training on it.

For each file: decodable or not (and why), container/codec, native sample rate, channels, duration,
clipping ratio, silence ratio (edge's own speech detector), an SNR estimate (speech-frame energy
over non-speech-frame energy), the share of energy above 4 kHz and 8 kHz at the native rate (a
recording whose nominal rate allows content up there but holds none was band-limited by a codec or
a phone line), and recordings that hold the same audio, found by a fingerprint that survives
re-encoding (decoded to 16 kHz mono, per-band log energies between 300 Hz and 3.4 kHz, so that
band-limiting, codec EQ and level changes do not hide a duplicate).

Module-level imports stay light (click, numpy, edge) because ``gvd --help`` imports every command.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import click
import numpy as np

from edge.audio import AUDIO_EXTENSIONS, AudioInfo, ChunkResampler, _downmix, open_audio
from edge.errors import AudioError, what_is_wrong
from edge.features import FrameStats, analyse_frames
from edge.settings import DEFAULT_SETTINGS
from edge.vad import speech_mask

ANALYSIS_RATE = 16000
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
# Band-limit: a file is flagged when less than this share of its energy lies above an edge its
# nominal rate could carry. Measured on the shared sets: full-band AAC speech keeps 0.3-6 % of its
# energy above 8 kHz, WhatsApp Opus 0.0001-0.08 % (its content fades out between 8 and 12 kHz).
# Above 4 kHz, dull but full-band TV speech (Urdu) keeps down to 0.003 %, with no cliff at 4 kHz, so
# that edge is only flagged when almost nothing is left (a telephone-band recording).
BAND_EDGES_HZ = (4000.0, 8000.0)
BAND_LIMIT_SHARE = {4000.0: 1e-5, 8000.0: 1e-3}
# A band edge is only judged when the nominal Nyquist frequency leaves room above it.
BAND_MARGIN_HZ = 1000.0
LOW_SNR_DB = 10.0
CLIPPING_WARN = 0.001
# Fingerprint: 20 ms frames of the log power spectrum between 300 Hz and 3.4 kHz (the telephone band,
# which every codec here keeps), floored 40 dB under its peak (codecs rewrite the quiet detail),
# centred per frequency bin (removes EQ and level) and per frame (keeps the spectral shape only, so
# pauses count for nothing). Measured on 25 re-encodings of 5 shared clips (Opus 12/16 kbit/s, AAC
# 32 kbit/s, MP3 32 kbit/s, 8 kHz telephone band): similarity 0.90-1.00 to the original; 228 pairs of
# takes of the same sentence by the same RAVDESS actor: at most 0.78. Threshold in between.
FP_HOP = 320
FP_FFT = 512
FP_BAND_HZ = (300.0, 3400.0)
FP_FLOOR_DB = 40.0
FP_MAX_LAG = 10  # frames (200 ms): codec priming delays are a few tens of ms
# Screening every pair: the first 3 s of the fingerprint pooled to 100 ms x 4 bins, one matrix product.
SCREEN_FRAMES = 150
SCREEN_POOL = (5, 4)
SCREEN_SKIPS = (0, 2, 4)  # frames
SCREEN_THRESHOLD = 0.8
DUPLICATE_THRESHOLD = 0.85
# Memory stays bounded whatever the length: the file is decoded block by block, speech is detected
# per half minute (a file shorter than a minute is judged as a whole, as before), and the fingerprint
# covers the first five minutes (enough to recognise a copy; identical copies also match by digest).
# Measured on a 1-hour 44.1 kHz WAV: peak RSS 3.9 GB before, about 0.1 GB now.
VAD_SEGMENT_SECONDS = 30.0
FP_MAX_FRAMES = int(300 * ANALYSIS_RATE / FP_HOP)

@dataclass
class FileReport:
    path: str  # relative to the validated root
    ok: bool
    error: str | None = None
    format: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration: float | None = None
    clipping_ratio: float | None = None
    silence_ratio: float | None = None
    speech_seconds: float | None = None
    snr_db: float | None = None
    energy_above_4k: float | None = None
    energy_above_8k: float | None = None
    flags: list[str] = field(default_factory=list)
    duplicate_of: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # decoded with a problem, e.g. truncated


@dataclass(frozen=True)
class Duplicate:
    a: str
    b: str
    similarity: float
    offset_seconds: float  # b lags a by this much
    identical: bool  # same decoded samples


# ---------------------------------------------------------------- per-file analysis (worker side)

def _band_power(mono: np.ndarray, n_fft: int) -> np.ndarray:
    """Summed power spectrum of non-overlapping Hann frames (a Welch estimate without the averaging)."""
    n = len(mono) // n_fft
    if n == 0:
        mono = np.pad(mono, (0, n_fft - len(mono)))
        n = 1
    frames = mono[: n * n_fft].reshape(n, n_fft) * np.hanning(n_fft)
    spectrum = np.fft.rfft(frames, axis=1)
    return (spectrum.real**2 + spectrum.imag**2).sum(axis=0)


def _fingerprint_frames(frames: np.ndarray) -> np.ndarray:
    """Log power in the telephone band of (n, FP_FFT) frames, float64 (before flooring and centring)."""
    spectrum = np.fft.rfft(np.asarray(frames, dtype=np.float64) * np.hanning(FP_FFT), axis=1)
    freqs = np.fft.rfftfreq(FP_FFT, 1.0 / ANALYSIS_RATE)
    band = (freqs >= FP_BAND_HZ[0]) & (freqs < FP_BAND_HZ[1])
    return 10.0 * np.log10(spectrum.real[:, band] ** 2 + spectrum.imag[:, band] ** 2 + 1e-10)


def _finish_fingerprint(log: np.ndarray) -> np.ndarray:
    log = np.maximum(log, log.max() - FP_FLOOR_DB)  # digital silence must not dominate the pattern
    log -= log.mean(axis=0)
    log -= log.mean(axis=1, keepdims=True)
    return log.astype(np.float32)


def fingerprint(y16: np.ndarray) -> np.ndarray:
    """Double-centred log spectrogram in the telephone band, shape (frames, bins), float32."""
    y16 = np.asarray(y16, dtype=np.float64)
    if len(y16) < FP_FFT:
        y16 = np.pad(y16, (0, FP_FFT - len(y16)))
    frames = np.lib.stride_tricks.sliding_window_view(y16, FP_FFT)[::FP_HOP]
    return _finish_fingerprint(_fingerprint_frames(frames))


class _StreamingFingerprint:
    """:func:`fingerprint` of the first FP_MAX_FRAMES frames, fed block by block."""

    def __init__(self) -> None:
        self._tail = np.zeros(0, dtype=np.float32)  # samples from the next frame's start on
        self._parts: list[np.ndarray] = []
        self._frames = 0

    def add(self, y16: np.ndarray) -> None:
        if self._frames >= FP_MAX_FRAMES:
            return
        joined = np.concatenate([self._tail, y16])
        count = min(max(0, (len(joined) - FP_FFT) // FP_HOP + 1), FP_MAX_FRAMES - self._frames)
        if count:
            frames = np.lib.stride_tricks.sliding_window_view(joined, FP_FFT)[::FP_HOP][:count]
            self._parts.append(_fingerprint_frames(frames))
            self._frames += count
        self._tail = joined[count * FP_HOP :]

    def result(self) -> np.ndarray:
        if not self._frames:  # shorter than one frame: padded, as fingerprint() does
            self.add(np.zeros(FP_FFT - len(self._tail), dtype=np.float32))
        return _finish_fingerprint(np.concatenate(self._parts))


def _frames_in_pieces(y16: np.ndarray, frames_per_piece: int = 250) -> FrameStats:
    """The frame analysis of ``y16``, a few seconds at a time (frames are independent, so the result is
    the same as analysing it whole), so a long segment's spectra are never all in memory at once."""
    hop, length = DEFAULT_SETTINGS.hop_length, DEFAULT_SETTINGS.frame_length
    parts = [analyse_frames(y16[first * hop : (first + frames_per_piece - 1) * hop + length], DEFAULT_SETTINGS, first)
             for first in range(0, max(1, len(y16) // hop), frames_per_piece)]
    return FrameStats.join(parts)


class _StreamingSpeech:
    """Speech mask and frame energies of a 16 kHz signal fed block by block, judged per segment."""

    def __init__(self) -> None:
        self.frame = DEFAULT_SETTINGS.hop_length  # samples per frame of the mask (frames overlap)
        self._segment = int(VAD_SEGMENT_SECONDS * ANALYSIS_RATE) // self.frame * self.frame
        self._pending = np.zeros(0, dtype=np.float32)
        self._masks: list[np.ndarray] = []
        self._energies: list[np.ndarray] = []

    def add(self, y16: np.ndarray, last: bool = False) -> None:
        self._pending = np.concatenate([self._pending, y16])
        while len(self._pending) >= 2 * self._segment or (last and len(self._pending)):
            # Never leave a stub of less than a segment for the end: it would be judged on its own.
            take = self._segment if len(self._pending) >= 2 * self._segment else len(self._pending)
            self._judge(self._pending[:take])
            self._pending = self._pending[take:]

    def _judge(self, y16: np.ndarray) -> None:
        stats = _frames_in_pieces(y16)
        if len(stats):
            self._masks.append(speech_mask(stats, DEFAULT_SETTINGS))
            self._energies.append(stats.energy_db.astype(np.float64))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.add(np.zeros(0, dtype=np.float32), last=True)
        if not self._masks:
            return np.zeros(0, dtype=bool), np.zeros(0)
        return np.concatenate(self._masks), np.concatenate(self._energies)


def _snr_db(energy_db: np.ndarray, speech: np.ndarray) -> float | None:
    """Mean speech-frame power over the noise floor (10th percentile of all frame powers).

    Read speech leaves few pauses longer than the detector's hangover, so its "non-speech" frames
    are mostly word gaps and consonants; the quietest tenth of the frames is a steadier noise floor.
    """
    if energy_db.size == 0:
        return None
    power = 10.0 ** (energy_db / 10.0)
    noise = max(float(np.percentile(power, 10)), 1e-10)
    signal = float(power[speech].mean()) if speech.any() else float(np.percentile(power, 95))
    return float(10.0 * np.log10(max(signal - noise, 1e-10) / noise)) if signal > noise else 0.0


@dataclass
class _LevelsAndSpectrum:
    """Sample count, clipped samples, audibility and the long-term power spectrum, block by block."""

    n_fft: int
    total: int = 0
    clipped: int = 0
    audible: bool = False
    band_power: np.ndarray = field(init=False)
    carry: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.band_power = np.zeros(self.n_fft // 2 + 1)
        self.carry = np.zeros(0, dtype=np.float32)

    def add(self, block: np.ndarray) -> np.ndarray:
        """Accumulates one (frames, channels) block; returns its mono downmix."""
        self.total += block.shape[0]
        self.clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
        mono = _downmix(block)
        self.audible = self.audible or bool(np.any(mono))
        joined = np.concatenate([self.carry, mono])
        usable = len(joined) // self.n_fft * self.n_fft
        if usable:
            self.band_power += _band_power(joined[:usable], self.n_fft)
        self.carry = joined[usable:]
        return mono

    def finish(self) -> None:
        if self.carry.size:
            self.band_power += _band_power(self.carry, self.n_fft)

    def shares_above(self, sample_rate: int) -> dict[float, float | None]:
        """Share of the energy above each band edge (None where the edge is past Nyquist)."""
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        energy = self.band_power.sum()
        nyquist = sample_rate / 2.0
        shares = {}
        for edge_hz in BAND_EDGES_HZ:
            shares[edge_hz] = float(self.band_power[freqs >= edge_hz].sum() / energy) if edge_hz < nyquist else None
        return shares


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass
class _At16k:
    """The analyses of the 16 kHz mono signal: speech frames, fingerprint and a hash of the samples."""

    speech: _StreamingSpeech = field(default_factory=_StreamingSpeech)
    fingerprint: _StreamingFingerprint = field(default_factory=_StreamingFingerprint)
    digest: _Digest = field(default_factory=hashlib.sha1)

    def add(self, y16: np.ndarray, last: bool = False) -> None:
        self.speech.add(y16, last)
        self.fingerprint.add(y16)
        self.digest.update(np.round(y16 * 32767).astype(np.int16).tobytes())


def _measure(info: AudioInfo, blocks: Iterator[np.ndarray], report: FileReport) -> _At16k:
    """Decodes the file into ``report``'s level and band measures; raises AudioError when it is unusable."""
    report.format, report.codec = info.format, info.codec
    report.sample_rate, report.channels = info.sample_rate, info.channels
    if info.sample_rate <= 0:
        raise AudioError("the file does not state a sample rate")
    levels = _LevelsAndSpectrum(1 << max(8, int(round(math.log2(info.sample_rate / 16000 * 1024)))))
    resampler = ChunkResampler(ANALYSIS_RATE)
    at_16k = _At16k()
    for block in blocks:
        if not np.isfinite(block).all():
            raise AudioError("the file contains NaN or infinite samples")
        at_16k.add(resampler(levels.add(block), info.sample_rate))
    if levels.total == 0:
        raise AudioError("the file holds no audio samples")
    at_16k.add(resampler.finish(), last=True)
    levels.finish()
    report.duration = levels.total / info.sample_rate
    report.clipping_ratio = levels.clipped / (levels.total * max(1, info.channels))
    report.warnings = list(info.warnings)
    if not levels.audible:
        raise AudioError("the file holds only digital silence")
    shares = levels.shares_above(info.sample_rate)
    report.energy_above_4k, report.energy_above_8k = shares[4000.0], shares[8000.0]
    return at_16k


def _add_speech_measures(report: FileReport, speech: _StreamingSpeech) -> None:
    mask, energy_db = speech.result()
    if mask.size:
        report.silence_ratio = float(1.0 - mask.mean())
        report.speech_seconds = float(mask.sum() * speech.frame / ANALYSIS_RATE)
        report.snr_db = _snr_db(energy_db, mask)
    else:
        report.silence_ratio, report.speech_seconds = 1.0, 0.0


def analyse_file(path: Path, root: Path) -> tuple[FileReport, np.ndarray | None, str | None]:
    """Report for one file, plus its fingerprint and a hash of its decoded samples (None when unusable).

    The file is decoded block by block and every measure is accumulated, so memory does not grow with
    the length of the recording.
    """
    report = FileReport(path=str(path.relative_to(root)), ok=False)
    try:
        info, blocks = open_audio(path)
        at_16k = _measure(info, blocks, report)
    except (AudioError, OSError) as exc:
        report.error = what_is_wrong(str(exc), path.name, str(path))
        return report, None, None
    except Exception as exc:  # a validator reports any failure per file instead of stopping
        report.error = f"{type(exc).__name__}: {exc}"
        return report, None, None
    report.ok = True
    _add_speech_measures(report, at_16k.speech)
    report.flags = _flags(report)
    return report, at_16k.fingerprint.result(), at_16k.digest.hexdigest()


def _band_flags(report: FileReport) -> list[str]:
    flags = []
    nyquist = (report.sample_rate or 0) / 2.0
    for edge_hz, share in zip(BAND_EDGES_HZ, (report.energy_above_4k, report.energy_above_8k), strict=True):
        if share is not None and nyquist >= edge_hz + BAND_MARGIN_HZ and share < BAND_LIMIT_SHARE[edge_hz]:
            flags.append(f"band-limited<{edge_hz / 1000:.0f}kHz")
    return flags[:1]  # limited below 4 kHz implies below 8 kHz


def _flags(report: FileReport) -> list[str]:
    flags = _band_flags(report)
    if report.sample_rate is not None and report.sample_rate < ANALYSIS_RATE:
        flags.append("low-rate")  # upsampled for the model: nothing above its Nyquist frequency
    if report.clipping_ratio is not None and report.clipping_ratio >= CLIPPING_WARN:
        flags.append("clipping")
    if report.duration is not None and report.duration < DEFAULT_SETTINGS.min_speech_seconds:
        flags.append("too-short")  # what predict calls no_speech with reason too_short
    elif report.speech_seconds is not None and report.speech_seconds < DEFAULT_SETTINGS.min_speech_seconds:
        flags.append("no-speech")
    if any(w.startswith("truncated") for w in report.warnings):
        flags.append("truncated")
    elif report.warnings:
        flags.append("damaged")
    if report.snr_db is not None and report.snr_db < LOW_SNR_DB:
        flags.append("low-snr")
    return flags


def _analyse_star(args: tuple[Path, Path]):
    return analyse_file(*args)


# ---------------------------------------------------------------- duplicates (main process)

def similarity(a: np.ndarray, b: np.ndarray, max_lag: int = FP_MAX_LAG) -> tuple[float, int]:
    """Best Pearson correlation of two fingerprints over lags of b against a (in frames)."""
    best, best_lag = -1.0, 0
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, -lag):]
        y = b[max(0, lag):]
        n = min(len(x), len(y))
        if n < 10:
            continue
        x = x[:n].ravel() - x[:n].mean()
        y = y[:n].ravel() - y[:n].mean()
        denom = math.sqrt(float(x @ x) * float(y @ y))
        if denom > 0 and float(x @ y) / denom > best:
            best, best_lag = float(x @ y) / denom, lag
    return best, best_lag


def _screen_vector(fp: np.ndarray, skip: int = 0) -> np.ndarray:
    """Fixed-size unit vector: 3 s from frame ``skip`` on, pooled to 100 ms x 4 bins."""
    pt, pf = SCREEN_POOL
    head = np.zeros((SCREEN_FRAMES, fp.shape[1] // pf * pf), dtype=np.float32)
    part = fp[skip : skip + SCREEN_FRAMES, : head.shape[1]]
    n = len(part)
    head[:n] = part
    pooled = head.reshape(SCREEN_FRAMES // pt, pt, -1, pf).mean(axis=(1, 3)).ravel()
    pooled -= pooled.mean()
    norm = float(np.linalg.norm(pooled))
    return pooled / norm if norm > 0 else pooled


def find_duplicates(
    names: Sequence[str],
    fingerprints: Sequence[np.ndarray],
    durations: Sequence[float],
    digests: Sequence[str] | None = None,
) -> list[Duplicate]:
    """Pairs of recordings that hold the same audio, whatever their container, codec or level.

    Pairs whose durations agree within 0.25 s (or 2 %) are screened all at once on a coarse,
    fixed-size vector (blocks of one matrix product); candidates are then scored at 20 ms
    resolution over +-200 ms lags. Identical decoded samples always count.
    """
    count = len(names)
    if count < 2:
        return []
    durations_arr = np.asarray(durations, dtype=np.float64)
    # Pooling blurs small shifts; screening at 0, 40 and 80 ms offsets either way covers codec delays.
    shifted = {skip: np.stack([_screen_vector(fp, skip) for fp in fingerprints]) for skip in SCREEN_SKIPS}
    screens = shifted[0]
    pairs: set[tuple[int, int]] = set()
    block = 512
    for start in range(0, count, block):
        rows = slice(start, min(count, start + block))
        scores = screens[rows] @ screens.T
        for skip in SCREEN_SKIPS[1:]:
            scores = np.maximum(scores, screens[rows] @ shifted[skip].T)
            scores = np.maximum(scores, shifted[skip][rows] @ screens.T)
        gap = np.abs(durations_arr[rows, None] - durations_arr[None, :])
        close = gap <= np.maximum(0.25, 0.02 * np.maximum(durations_arr[rows, None], durations_arr[None, :]))
        hits = np.argwhere(close & (scores >= SCREEN_THRESHOLD))
        pairs.update((start + int(i), int(j)) for i, j in hits if start + int(i) < int(j))
    if digests is not None:
        by_digest: dict[str, list[int]] = {}
        for k, digest in enumerate(digests):
            by_digest.setdefault(digest, []).append(k)
        for group in by_digest.values():
            pairs.update((i, j) for i in group for j in group if i < j)
    found: list[Duplicate] = []
    for i, j in sorted(pairs):
        identical = digests is not None and digests[i] == digests[j]
        score, lag = (1.0, 0) if identical else similarity(fingerprints[i], fingerprints[j])
        if score >= DUPLICATE_THRESHOLD:
            a, b, lag = (i, j, lag) if names[i] <= names[j] else (j, i, -lag)
            found.append(Duplicate(names[a], names[b], round(score, 4), round(lag * FP_HOP / ANALYSIS_RATE, 3),
                                   identical))
    return sorted(found, key=lambda d: (d.a, d.b))


# ---------------------------------------------------------------- driver

def audio_files(root: Path, unreadable: list[Path] | None = None) -> list[Path]:
    """Every file under root whose extension says audio (whether or not it really is).

    Folders that cannot be listed are added to ``unreadable`` (never skipped without a word).
    """
    if root.is_file():
        return [root]

    def cannot_list(exc: OSError) -> None:
        if unreadable is not None:
            unreadable.append(Path(exc.filename))

    found = []
    for parent, _, files in os.walk(root, onerror=cannot_list):
        found.extend(Path(parent) / f for f in files if Path(f).suffix.lower() in AUDIO_EXTENSIONS)
    return sorted(found)


def _progress(items: Iterable, total: int, label: str) -> Iterator:
    try:
        from tqdm import tqdm
    except ImportError:
        with click.progressbar(items, length=total, label=label, file=sys.stderr) as bar:
            yield from bar
        return
    yield from tqdm(items, total=total, desc=label, unit="file", file=sys.stderr, leave=False)


def validate(root: Path, jobs: int = 1, progress: bool = True) -> tuple[list[FileReport], list[Duplicate]]:
    """Analyse every audio file under ``root``; return per-file reports and duplicate pairs."""
    root = Path(root)
    base = root.parent if root.is_file() else root
    unreadable: list[Path] = []
    files = audio_files(root, unreadable)
    tasks = [(p, base) for p in files]
    if jobs > 1 and len(files) > 1:
        executor = ProcessPoolExecutor(max_workers=jobs)
        results = executor.map(_analyse_star, tasks, chunksize=4)
    else:
        executor = None
        results = map(_analyse_star, tasks)
    try:
        if progress:
            results = _progress(results, len(tasks), "validating")
        outputs = list(results)
    finally:
        if executor is not None:
            executor.shutdown()
    reports = [o[0] for o in outputs]
    reports += [FileReport(path=str(folder.relative_to(base)), ok=False,
                           error="permission denied (the folder cannot be searched)") for folder in unreadable]
    usable = [k for k, o in enumerate(outputs) if o[1] is not None]
    duplicates = find_duplicates(
        [reports[k].path for k in usable],
        [outputs[k][1] for k in usable],
        [reports[k].duration or 0.0 for k in usable],
        [outputs[k][2] for k in usable],
    )
    by_name = {r.path: r for r in reports}
    for dup in duplicates:
        by_name[dup.a].duplicate_of.append(dup.b)
        by_name[dup.b].duplicate_of.append(dup.a)
        for name in (dup.a, dup.b):
            if "duplicate" not in by_name[name].flags:
                by_name[name].flags.append("duplicate")
    return reports, duplicates


def summarise(reports: Sequence[FileReport], duplicates: Sequence[Duplicate]) -> dict:
    ok = [r for r in reports if r.ok]
    flags: dict[str, int] = {}
    for r in ok:
        for flag in r.flags:
            flags[flag] = flags.get(flag, 0) + 1
    count = lambda values: {str(k): values.count(k) for k in sorted(set(values), key=str)}  # noqa: E731
    return {
        "files": len(reports),
        "usable": len(ok),
        "unusable": len(reports) - len(ok),
        "hours": round(sum(r.duration or 0.0 for r in ok) / 3600.0, 3),
        "codecs": count([r.codec for r in ok]),
        "sample_rates": count([r.sample_rate for r in ok]),
        "channels": count([r.channels for r in ok]),
        "flags": dict(sorted(flags.items())),
        "duplicate_pairs": len(duplicates),
        "median_snr_db": round(float(np.median([r.snr_db for r in ok if r.snr_db is not None])), 1)
        if any(r.snr_db is not None for r in ok) else None,
    }


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _table(reports: Sequence[FileReport]) -> str:
    header = ("file", "status", "codec", "rate", "ch", "dur s", "clip %", "sil %", "SNR dB",
              ">4k %", ">8k %", "flags / reason")
    rows = []
    for r in reports:
        rows.append((
            r.path, "ok" if r.ok else "UNUSABLE", r.codec or "-", _fmt(r.sample_rate, "d"),
            _fmt(r.channels, "d"), _fmt(r.duration, ".2f"),
            _fmt(None if r.clipping_ratio is None else 100 * r.clipping_ratio, ".2f"),
            _fmt(None if r.silence_ratio is None else 100 * r.silence_ratio, ".0f"),
            _fmt(r.snr_db, ".1f"),
            _fmt(None if r.energy_above_4k is None else 100 * r.energy_above_4k, ".3f"),
            _fmt(None if r.energy_above_8k is None else 100 * r.energy_above_8k, ".4f"),
            ", ".join(r.flags) if r.ok else (r.error or ""),
        ))
    widths = [max(len(str(row[k])) for row in rows + [header]) for k in range(len(header) - 1)]
    lines = []
    for row in [header] + rows:
        # widths covers every column but the last (free text), which zip leaves out
        padded = enumerate(zip(row, widths, strict=False))
        cells = [str(c).ljust(w) if k in (0, 1, 2) else str(c).rjust(w) for k, (c, w) in padded]
        lines.append("  ".join(cells + [str(row[-1])]))
    return "\n".join(lines)


def _summary_text(summary: dict) -> str:
    lines = [
        f"files: {summary['files']}  usable: {summary['usable']}  unusable: {summary['unusable']}  "
        f"audio: {summary['hours']:.2f} h  median SNR: {summary['median_snr_db']} dB",
        "codecs: " + ", ".join(f"{k} {v}" for k, v in summary["codecs"].items()),
        "sample rates: " + ", ".join(f"{k} Hz {v}" for k, v in summary["sample_rates"].items()),
        "channels: " + ", ".join(f"{k}ch {v}" for k, v in summary["channels"].items()),
        "flags: " + (", ".join(f"{k} {v}" for k, v in summary["flags"].items()) or "none"),
    ]
    return "\n".join(lines)


@click.group("data")
def data() -> None:
    """Inspect training data."""


@data.command("validate")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--summary", is_flag=True, help="Only the summary and duplicates, no per-file table.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: up to 2; at most the number of CPUs).")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def validate_command(root: Path, as_json: bool, summary: bool, jobs: int | None, no_progress: bool) -> None:
    """Report on every audio file under ROOT: decodable, format, rate, channels, duration, clipping,
    silence, SNR, band-limit, duplicates. Usable files may be flagged (too-short, truncated, damaged,
    no-speech, clipping, low-snr, ...). Exits with status 1 when any file is unusable or any folder
    cannot be searched."""
    from edge.commands import cap_jobs

    jobs = cap_jobs(jobs) if jobs else max(1, min(2, os.cpu_count() or 1))
    reports, duplicates = validate(root, jobs=jobs, progress=not no_progress)
    if not reports:
        raise click.ClickException(f"{root}: no audio files found (extensions: {', '.join(sorted(AUDIO_EXTENSIONS))})")
    overview = summarise(reports, duplicates)
    if as_json:
        click.echo(json.dumps({
            "root": str(root),
            "summary": overview,
            "files": [asdict(r) for r in reports],
            "duplicates": [asdict(d) for d in duplicates],
        }, indent=2))
    else:
        if not summary:
            click.echo(_table(reports))
            click.echo()
        click.echo(_summary_text(overview))
        if duplicates:
            click.echo("duplicates (same audio):")
            for d in duplicates:
                kind = ("identical samples" if d.identical
                        else f"similarity {d.similarity:.3f}, offset {d.offset_seconds:+.2f} s")
                click.echo(f"  {d.a}  ==  {d.b}  ({kind})")
        bad = [r for r in reports if not r.ok]
        if bad:
            click.echo(f"{len(bad)} unusable file(s):", err=True)
            for r in bad:
                click.echo(f"  {r.path}: {r.error}", err=True)
    if any(not r.ok for r in reports):
        sys.exit(1)
