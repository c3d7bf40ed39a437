"""The runtime's Python API: load a model once, predict on files or arrays, or stream.

A file is decoded block by block (:func:`edge.audio.iter_mono`) into a rolling buffer, and each
analysis window is turned into model input (:func:`edge.pipeline.window_input`, the code training
uses) as soon as it is complete, so an hour-long recording needs no more memory than a minute.
Windows are batched into as few onnxruntime calls as possible: windows whose inputs have the same
number of frames are stacked (the model's time axis is dynamic, but padding would change a
recurrent model's answer, so unequal windows are never padded).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import model as _model
from .audio import iter_mono, prepare_array, sniff_suffix
from .errors import ModelError
from .metadata import ModelMetadata
from .pipeline import WindowInput, aggregate, window_input, window_starts
from .settings import FeatureSettings

LABELS = ("female", "male", "no_speech")
STAGES = ("decode", "resample", "clean", "features", "inference")
# Run the model once this many speech windows are waiting, so that long files stay in bounded memory.
_BATCH_WINDOWS = 128


@dataclass(frozen=True)
class Segment:
    """One analysis window of the timeline; p_female is None where it held too little speech."""

    start: float
    end: float
    p_female: float | None
    speech_seconds: float = 0.0


@dataclass
class Prediction:
    label: str  # 'female' | 'male' | 'no_speech'
    p_female: float | None  # clip probability of female; None when no window held speech
    confidence: float | None  # probability of the chosen gender; None for no_speech
    speech_seconds: float  # speech that reached the model, summed over windows
    duration: float  # seconds of audio
    segments: list[Segment]
    timings_ms: dict[str, float]
    model: str
    threshold: float
    path: str | None = None
    # Why there is no answer: "too_short" (less audio than the model needs), "silence" (no window held
    # enough speech: silence, noise, hum) or "not_speech" (sound the speech detector rejected, e.g. music).
    reason: str | None = None
    # The windows disagree confidently (e.g. a woman then a man): the clip label is not one voice's.
    mixed: bool = False
    # Problems with the input that did not stop the prediction (e.g. a truncated file).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies, which cost 10 % of a short clip's time.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["segments"] = [{"start": s.start, "end": s.end, "p_female": s.p_female, "speech_seconds": s.speech_seconds}
                            for s in self.segments]
        data["timings_ms"] = dict(self.timings_ms)
        data["warnings"] = list(self.warnings)
        return data


def decide(p_female: float | None, threshold: float) -> tuple[str, float | None]:
    """Label and confidence from a probability; None means no speech was heard."""
    if p_female is None:
        return "no_speech", None
    if p_female >= threshold:
        return "female", float(p_female)
    return "male", float(1.0 - p_female)


class _SpeechUnion:
    """Seconds of speech in the clip: the union of the windows' speech frames (windows overlap)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._pending: list[tuple[float, float]] = []

    def add(self, window: WindowInput, settings: FeatureSettings) -> None:
        if window.speech_mask is None:
            if window.speech_seconds > 0:
                self._pending.append((window.start, window.end))
        elif window.speech_mask.any():
            frame = settings.vad_frame_length / settings.sample_rate
            edges = np.diff(np.concatenate([[0], window.speech_mask.astype(np.int8), [0]]))
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                self._pending.append((window.start + a * frame, window.start + b * frame))
        self._merge(done_before=window.start)

    def _merge(self, done_before: float) -> None:
        # Windows arrive in order of start, so intervals ending before this start cannot grow any more.
        merged: list[tuple[float, float]] = []
        for a, b in sorted(self._pending):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.total += sum(b - a for a, b in merged if b <= done_before)
        self._pending = [(a, b) for a, b in merged if b > done_before]

    def seconds(self) -> float:
        self._merge(done_before=float("inf"))
        return self.total


class _Timeline:
    """Collects window inputs, runs the model in batches, keeps the per-window results in order."""

    def __init__(self, detector: "Detector", timings: dict[str, float]):
        self.detector = detector
        self.timings = timings
        self.segments: list[Segment] = []
        self.speech = _SpeechUnion()
        self._pending: list[tuple[int, np.ndarray]] = []  # (segment index, features)

    def add(self, window: WindowInput) -> None:
        self.speech.add(window, self.detector.settings)
        self.segments.append(Segment(window.start, window.end, None, window.speech_seconds))
        if window.features is not None:
            self._pending.append((len(self.segments) - 1, window.features))
            if len(self._pending) >= _BATCH_WINDOWS:
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        indices = [i for i, _ in self._pending]
        tick = time.perf_counter()
        probs = self.detector.infer([f for _, f in self._pending])
        self.timings["inference"] += time.perf_counter() - tick
        for i, p in zip(indices, probs):
            s = self.segments[i]
            self.segments[i] = Segment(s.start, s.end, float(p), s.speech_seconds)
        self._pending = []


class Detector:
    """A loaded model: ``Detector()`` for the default shipped one, a name (gru, lstm, rnn) or an .onnx path."""

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 1,
                 threshold: float | None = None, inter_threads: int = 1):
        self._loaded = _model.load(model, threads=threads, inter_threads=inter_threads)
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold: float = float(threshold if threshold is not None else self.metadata.threshold)
        self.threads = threads

    @property
    def name(self) -> str:
        return self._loaded.ref.name

    @property
    def path(self) -> Path:
        return self._loaded.ref.path

    @property
    def metadata(self) -> ModelMetadata:
        return self._loaded.metadata

    @property
    def settings(self) -> FeatureSettings:
        return self._loaded.settings

    def __repr__(self) -> str:
        return f"Detector(model={self.name!r}, cell={self.metadata.cell!r}, threshold={self.threshold})"

    # -- inference ---------------------------------------------------------------------------
    def infer(self, features: list[np.ndarray]) -> np.ndarray:
        """p_female for each (frames, n_mfcc) input; equal-length inputs share one session call."""
        out = np.empty(len(features), dtype=np.float64)
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            groups.setdefault(f.shape[0], []).append(i)
        session = self._loaded.session
        for idx in groups.values():
            batch = np.ascontiguousarray(np.stack([features[i] for i in idx]), dtype=np.float32)
            result = session.run([self._loaded.output_name], {self._loaded.input_name: batch})[0]
            result = np.asarray(result, dtype=np.float64).reshape(len(idx), -1)[:, 0]
            if not np.all(np.isfinite(result)) or result.min() < 0.0 or result.max() > 1.0:
                raise ModelError(f"{self.name}: the model returned values outside [0, 1]; is it a gvd model?")
            out[idx] = result
        return out

    # -- whole clips -------------------------------------------------------------------------
    def predict(self, source: str | os.PathLike | np.ndarray | bytes,
                sample_rate: int | None = None) -> Prediction:
        """Classify a file path, the bytes of an audio file, or an array (with its sample rate)."""
        timings = {stage: 0.0 for stage in STAGES}
        start = time.perf_counter()
        path: str | None = None
        warnings: list[str] = []
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ValueError("predict(array) needs sample_rate=")
            tick = time.perf_counter()
            samples = prepare_array(source, int(sample_rate), self.settings.sample_rate)
            timings["resample"] += time.perf_counter() - tick
            blocks: Iterable[np.ndarray] = [samples]
            name = "the audio"
        elif isinstance(source, (bytes, bytearray, memoryview)):
            return self._predict_bytes(bytes(source))
        else:
            path = os.fspath(source)
            info, blocks = iter_mono(path, self.settings.sample_rate, timings=timings)
            warnings = info.warnings  # filled while the blocks are decoded (e.g. a truncated file)
            name = Path(path).name
        timeline = _Timeline(self, timings)
        total = self._run_windows(blocks, timeline, timings, name)
        timeline.flush()
        result = self._result(timeline, total, timings, start, path)
        result.warnings.extend(warnings)
        return result

    def _predict_bytes(self, data: bytes) -> Prediction:
        # Decoders need a seekable file with a telling suffix; a temporary file is the portable way.
        with tempfile.TemporaryDirectory(prefix="gvd-") as folder:
            path = Path(folder) / f"stdin{sniff_suffix(data[:16]) or '.audio'}"
            path.write_bytes(data)
            result = self.predict(path)
        result.path = None
        return result

    def _run_windows(self, blocks: Iterable[np.ndarray], timeline: _Timeline,
                     timings: dict[str, float], name: str) -> int:
        """Feed decoded blocks through a rolling buffer, emitting every window as soon as it is complete."""
        settings = self.settings
        size, hop, rate = settings.window_samples, settings.window_hop_samples, settings.sample_rate
        buffer = np.zeros(0, dtype=np.float32)
        buffer_start = 0  # absolute index of buffer[0]
        total = 0
        next_k = 0  # regular windows k * hop already done: k < next_k

        def run(start: int, length: int) -> None:
            segment = buffer[start - buffer_start : start - buffer_start + length]
            timeline.add(window_input(segment, settings, start / rate, timings))

        for block in blocks:
            buffer = np.concatenate([buffer, block]) if buffer.size else np.asarray(block, dtype=np.float32)
            total += block.size
            while next_k * hop + size <= total:
                run(next_k * hop, size)
                next_k += 1
            keep_from = max(buffer_start, min(next_k * hop, total - size))
            if keep_from > buffer_start:
                buffer = buffer[keep_from - buffer_start :].copy()
                buffer_start = keep_from
        if total < settings.min_speech_samples:
            return total  # too short to hold enough speech: no_speech, reason "too_short"
        # The same windows as pipeline.window_starts over the whole signal: the regular ones are done,
        # what remains is the window moved back to end with the signal (or the only, short, window).
        for start in window_starts(total, settings):
            if start % hop == 0 and start // hop < next_k:
                continue
            run(start, min(size, total - start))
        return total

    def _result(self, timeline: _Timeline, total: int, timings: dict[str, float],
                started: float, path: str | None) -> Prediction:
        segments = timeline.segments
        speech = [s for s in segments if s.p_female is not None]
        p_female = (aggregate(np.array([s.p_female for s in speech]), np.array([s.speech_seconds for s in speech]))
                    if speech else None)
        label, confidence = decide(p_female, self.threshold)
        reason = None
        if label == "no_speech":
            reason = "too_short" if total < self.settings.min_speech_samples else "silence"
        timings_ms = {stage: round(seconds * 1000.0, 3) for stage, seconds in timings.items()}
        timings_ms["total"] = round((time.perf_counter() - started) * 1000.0, 3)
        return Prediction(
            label=label,
            p_female=p_female,
            confidence=confidence,
            # Speech heard in the clip; 0 when no window held enough of it to judge.
            speech_seconds=round(min(timeline.speech.seconds(), total / self.settings.sample_rate), 3) if speech else 0.0,
            duration=total / self.settings.sample_rate,
            segments=segments,
            timings_ms=timings_ms,
            model=self.name,
            threshold=self.threshold,
            path=path,
            reason=reason,
            mixed=_mixed([s.p_female for s in speech], self.threshold),
        )

    # -- streaming ---------------------------------------------------------------------------
    def stream(self, hop_seconds: float = 0.5, **options: Any):
        """A :class:`edge.stream.StreamingDetector` fed with chunks of any size and sample rate."""
        from .stream import StreamingDetector

        return StreamingDetector(self, hop_seconds=hop_seconds, **options)


def _mixed(window_probabilities: list, threshold: float, margin: float = 0.3) -> bool:
    """True when some windows are confidently female and others confidently male (two voices)."""
    probs = [p for p in window_probabilities if p is not None]
    return bool(probs) and max(probs) >= threshold + margin * (1 - threshold) and min(probs) <= threshold * (1 - margin)


__all__ = ["Detector", "LABELS", "Prediction", "Segment", "decide"]
