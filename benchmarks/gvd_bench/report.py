"""The benchmark report: typed dataclasses until the moment it is written as JSON.

Every figure is measured for gvd and, in the same run, for the original pipeline (``None`` where a
side was not measured, with the reason in ``notes``). ``SCHEMA_VERSION`` changes whenever a field
does, so that tools reading ``bench.json`` can tell.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        import numpy as np

        a = np.asarray(values, dtype=np.float64)
        return cls(*(float(np.percentile(a, q)) for q in (50, 90, 99)))


@dataclass(frozen=True)
class StageTime:
    """One stage of the path from file to result (the detector's own ``timings_ms``), per clip."""

    stage: str
    ms: Percentiles


@dataclass(frozen=True)
class LengthCost:
    """Cost of one clip of ``seconds`` of audio: median wall time over ``runs`` runs."""

    seconds: float
    runs: int
    ms_per_clip: float
    ms_per_audio_second: float


@dataclass(frozen=True)
class Throughput:
    """A batch of ``files`` through ``jobs`` worker processes, from process launch to exit."""

    jobs: int
    files: int
    audio_seconds: float
    wall_seconds: float
    files_per_second: float
    audio_seconds_per_second: float


@dataclass(frozen=True)
class Weights:
    """Which weights a side ran with: the file, its digest and where it came from."""

    path: str
    sha256: str
    description: str


@dataclass(frozen=True)
class SideResult:
    """Every figure for one pipeline: gvd with one model, or the original pipeline."""

    name: str
    weights: Weights
    threads: int
    e2e_ms: Percentiles
    stages: list[StageTime]
    realtime_factor: float | None  # audio seconds per CPU second, over the latency runs
    lengths: list[LengthCost]
    throughput: list[Throughput]
    cold_start_ms: float | None  # new process to its first result, median
    peak_rss_mb: float | None  # of that process (one file)
    stream_cpu_percent: float | None  # CPU per second of streamed audio, % of one core
    stream_hop_seconds: float | None
    load_ms: float | None  # open the model in a running process
    model_size_kb: float | None
    windows_per_clip: float | None = None

    def stage(self, name: str) -> Percentiles | None:
        return next((s.ms for s in self.stages if s.stage == name), None)

    def length(self, seconds: float) -> LengthCost | None:
        return next((c for c in self.lengths if math.isclose(c.seconds, seconds, rel_tol=0.02)), None)

    def jobs(self, jobs: int) -> Throughput | None:
        return next((t for t in self.throughput if t.jobs == jobs), None)


def stage_names(sides: list[SideResult]) -> list[str]:
    """Every stage any side reports, in the order they first appear (each pipeline names its own)."""
    names: list[str] = []
    for side in sides:
        names += [s.stage for s in side.stages if s.stage not in names]
    return names


@dataclass(frozen=True)
class Ratio:
    """One figure of both sides and how many times better gvd is (None when a side is missing)."""

    figure: str
    unit: str
    gvd: float | None
    original: float | None
    times_better: float | None

    @classmethod
    def of(cls, figure: str, unit: str, gvd: float | None, original: float | None, lower_is_better: bool) -> Ratio:
        better = None
        if gvd is not None and original is not None and gvd > 0 and original > 0:
            better = original / gvd if lower_is_better else gvd / original
        return cls(figure, unit, gvd, original, better)


@dataclass(frozen=True)
class Goal:
    goal: str
    target: str  # e.g. "<= 5"
    measured: float | None
    met: bool | None  # None: not measured


@dataclass(frozen=True)
class Machine:
    cpu: str
    machine: str
    cores: int
    os: str
    python: str
    numpy: str
    onnxruntime: str
    libsndfile: str  # the decoder of WAV / FLAC / OGG (the system's where it has one: edge.audio)
    # Other work on the machine inflates every figure; the 1-minute load average says how busy it was.
    load_average_start: float | None
    load_average_end: float | None


@dataclass(frozen=True)
class Settings:
    command: str
    runs: int
    warmup: int
    threads: int
    clips: list[str]
    clip_seconds: list[float]
    lengths_seconds: list[float]
    length_clip_format: str
    batch_files: int
    cold_runs: int
    stream_seconds: float
    stream_chunk_seconds: float
    stream_rate: int


@dataclass
class Report:
    schema: int
    machine: Machine
    settings: Settings
    gvd: list[SideResult]  # the first is the reference: the default model unless --models says otherwise
    original: SideResult | None
    comparison: list[Ratio]
    goals: list[Goal]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _finite(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _finite(value):
    """JSON holds no NaN or infinity: report them as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
