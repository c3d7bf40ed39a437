"""The runtime's Python API: load a model once, predict on files or arrays, or stream.

A file is decoded block by block (:func:`edge.audio.iter_mono`) into the frame cursor
(:class:`edge.pipeline.FrameCursor`, the code training uses): every frame is analysed once and each
analysis window is a slice of the frames, turned into model input as soon as it is complete, so an
hour-long recording needs no more memory than a minute. Windows are batched into as few
onnxruntime calls as possible: windows whose inputs have the same number of frames are stacked (the
model's time axis is dynamic, but padding would change a recurrent model's answer).

Models with a ``p_speech`` output also judge whether a window is speech at all: windows it rejects
(music, animals, alarms that passed the cheap detector) get no gender, and a clip in which it accepted
none of the windows, or under half of them (:mod:`edge.decision`), is ``no_speech`` with reason
``not_speech``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import model as _model
from .audio import iter_mono, prepare_array, sniff_suffix
from .decision import accepted_as_speech, enough_speech
from .errors import ModelError
from .metadata import ModelMetadata
from .pipeline import LABELS, STAGES, FrameCursor, SpeechUnion, WindowInput, aggregate, decide
from .settings import FeatureSettings

# Run the model once this many speech windows are waiting, so that long files stay in bounded memory.
_BATCH_WINDOWS = 128


@dataclass(frozen=True)
class Segment:
    """One analysis window of the timeline; p_female is None where it held too little speech or
    was not speech (p_speech below the threshold)."""

    start: float
    end: float
    p_female: float | None
    speech_seconds: float = 0.0
    p_speech: float | None = None  # None: too little speech to judge, or a model without that output


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
        data["segments"] = [{"start": s.start, "end": s.end, "p_female": s.p_female, "p_speech": s.p_speech,
                             "speech_seconds": s.speech_seconds} for s in self.segments]
        data["timings_ms"] = dict(self.timings_ms)
        data["warnings"] = list(self.warnings)
        return data


class _Timeline:
    """Collects window inputs, runs the model in batches, keeps the per-window results in order."""

    def __init__(self, detector: Detector, timings: dict[str, float]):
        self.detector = detector
        self.timings = timings
        self.segments: list[Segment] = []
        self.speech = SpeechUnion(detector.settings)
        self.heard_speech = False  # some window held enough speech for the model
        self._pending: list[tuple[int, np.ndarray]] = []  # (segment index, features)

    def add(self, window: WindowInput) -> None:
        self.speech.add(window)
        self.segments.append(Segment(window.start, window.end, None, window.speech_seconds))
        if window.features is not None:
            self.heard_speech = True
            self._pending.append((len(self.segments) - 1, window.features))
            if len(self._pending) >= _BATCH_WINDOWS:
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        indices = [i for i, _ in self._pending]
        tick = time.perf_counter()
        p_female, p_speech = self.detector.infer([f for _, f in self._pending])
        self.timings["inference"] += time.perf_counter() - tick
        accepted = accepted_as_speech(p_speech, self.detector.speech_threshold)
        for i, pf, ps, is_speech in zip(indices, p_female, p_speech, accepted, strict=True):
            s = self.segments[i]
            self.segments[i] = Segment(s.start, s.end, float(pf) if is_speech else None, s.speech_seconds,
                                       None if np.isnan(ps) else float(ps))
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
        speech = self._loaded.speech_output_name
        self._outputs = [self._loaded.output_name] + ([speech] if speech else [])

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

    @property
    def speech_threshold(self) -> float:
        """A window is speech when the model's p_speech reaches this (the model carries it)."""
        return self.metadata.speech_threshold

    @property
    def detects_speech(self) -> bool:
        """The model has a p_speech output (it rejects music and other sounds itself)."""
        return len(self._outputs) > 1

    def __repr__(self) -> str:
        return f"Detector(model={self.name!r}, cell={self.metadata.cell!r}, threshold={self.threshold})"

    # -- inference ---------------------------------------------------------------------------
    def infer(self, features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(p_female, p_speech) for each (frames, n_features) input; p_speech is NaN for a model
        without that output. Equal-length inputs share one session call."""
        p_female = np.empty(len(features), dtype=np.float64)
        p_speech = np.full(len(features), np.nan)
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            groups.setdefault(f.shape[0], []).append(i)
        session = self._loaded.session
        for idx in groups.values():
            batch = np.ascontiguousarray(np.stack([features[i] for i in idx]), dtype=np.float32)
            results = session.run(self._outputs, {self._loaded.input_name: batch})
            # A model without p_speech returns one output: p_speech then stays NaN.
            for out, result in zip((p_female, p_speech), results, strict=False):
                values = np.asarray(result, dtype=np.float64).reshape(len(idx), -1)[:, 0]
                if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
                    raise ModelError(f"{self.name}: the model returned values outside [0, 1]; is it a gvd model?")
                out[idx] = values
        return p_female, p_speech

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
        elif isinstance(source, (bytes, bytearray, memoryview)):
            return self._predict_bytes(bytes(source))
        else:
            path = os.fspath(source)
            info, blocks = iter_mono(path, self.settings.sample_rate, timings=timings)
            warnings = info.warnings  # filled while the blocks are decoded (e.g. a truncated file)
        timeline = _Timeline(self, timings)
        cursor = FrameCursor(self.settings, timings=timings)
        for block in blocks:
            for window in cursor.push(block):
                timeline.add(window)
        for window in cursor.finish():
            timeline.add(window)
        timeline.flush()
        return self._result(timeline, cursor.samples, timings, start, path, warnings)

    def _predict_bytes(self, data: bytes) -> Prediction:
        # Decoders need a seekable file with a telling suffix; a temporary file is the portable way.
        with tempfile.TemporaryDirectory(prefix="gvd-") as folder:
            path = Path(folder) / f"stdin{sniff_suffix(data[:16]) or '.audio'}"
            path.write_bytes(data)
            result = self.predict(path)
        result.path = None
        return result

    def _result(self, timeline: _Timeline, total: int, timings: dict[str, float],
                started: float, path: str | None, warnings: list[str]) -> Prediction:
        segments = timeline.segments
        speech = [s for s in segments if s.p_female is not None]
        judged = sum(1 for s in segments if s.p_female is not None or s.p_speech is not None)
        if not enough_speech(len(speech), judged):
            speech = []  # the model's odd false alarms on music (edge.decision)
        p_female = (aggregate(np.array([s.p_female for s in speech]), np.array([s.speech_seconds for s in speech]))
                    if speech else None)
        label, confidence = decide(p_female, self.threshold)
        reason = None
        if label == "no_speech":
            if total < self.settings.min_speech_samples:
                reason = "too_short"
            else:
                reason = "not_speech" if timeline.heard_speech else "silence"
        timings_ms = {stage: round(seconds * 1000.0, 3) for stage, seconds in timings.items()}
        timings_ms["total"] = round((time.perf_counter() - started) * 1000.0, 3)
        rate = self.settings.sample_rate
        return Prediction(
            label=label,
            p_female=p_female,
            confidence=confidence,
            # Speech heard in the clip; 0 when no window held enough of it to judge.
            speech_seconds=round(min(timeline.speech.seconds(), total / rate), 3) if speech else 0.0,
            duration=total / rate,
            segments=segments,
            timings_ms=timings_ms,
            model=self.name,
            threshold=self.threshold,
            path=path,
            reason=reason,
            mixed=_mixed([s.p_female for s in speech], self.threshold),
            warnings=list(warnings),
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
