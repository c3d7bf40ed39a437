"""A cheap speech detector on the frame analysis: loud enough, voiced at a speaking pitch, and alive.

Silence, hiss and room noise are not periodic between 70 and 500 Hz; speech is, for most of its
duration. Hum and buzz are periodic too, but hold pitch and level perfectly still; speech never does.
The decision for a frame depends only on its own analysis plus the analysis window's noise floor, so
files, streams and training see the same result. Music and other periodic sounds that pass here
are the model's to reject (its ``p_speech`` output).
"""

from __future__ import annotations

import numpy as np

from .features import FrameStats
from .settings import FeatureSettings

# A frame must stand this far above the quietest frames of its window (its noise floor).
_FLOOR_MARGIN_DB = 6.0
# A periodic sound that holds its pitch and level this long is a machine, not a voice.
_STEADY_SECONDS = 0.6


def _steady_runs(f0: np.ndarray, energy_db: np.ndarray, min_frames: int) -> np.ndarray:
    """True on runs of at least ``min_frames`` consecutive frames whose pitch and level hold still
    (an unmeasured pitch, 0, never matches, so it ends a run).

    A voice never holds its pitch to within 2 % and its level to within 3 dB for that long: its pitch
    glides and its level follows the syllables. Mains hum, fans and transformer buzz do exactly that.
    """
    n = f0.size
    steady = np.zeros(n, dtype=bool)
    start = 0
    for i in range(1, n + 1):
        # Extend the run while frame i stays close to the run's first frame.
        if (i < n and f0[start] > 0 and abs(f0[i] - f0[start]) <= 0.02 * f0[start]
                and abs(energy_db[i] - energy_db[start]) <= 3.0):
            continue
        if i - start >= min_frames:
            steady[start:i] = True
        start = i
    return steady


def speech_mask(stats: FrameStats, settings: FeatureSettings) -> np.ndarray:
    """Boolean per frame of ``stats`` (one analysis window): True where speech is."""
    n = len(stats)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if not settings.vad:
        return np.ones(n, dtype=bool)
    energy = stats.energy_db
    floor = np.percentile(energy, 10)
    loud = (energy > settings.vad_energy_dbfs) & (energy > floor + _FLOOR_MARGIN_DB)
    voiced = loud & (stats.voicing > settings.vad_voicing)
    if voiced.any():
        min_frames = int(round(_STEADY_SECONDS / settings.frame_seconds))
        voiced &= ~_steady_runs(np.where(loud, stats.f0, 0.0), energy, min_frames)
    # Low voices (F0 near 75-110 Hz: 2-3 periods per frame) drop below the voicing threshold for a
    # frame here and there; such one-frame gaps are bridged, or the blip removal below would take
    # their syllables apart (measured: it lost 14 of 548 BAVED words, against 3 bridged). Noise
    # rarely has two voiced frames one apart, so it gains nothing (tested).
    voiced = bridge_single_gaps(voiced)
    # Drop isolated blips before the hangover widens them past the shortest region (a single voiced
    # frame of noise would otherwise become 0.26 s of "speech"), then keep unvoiced consonants next
    # to voiced frames.
    shortest = int(round(settings.vad_min_region_seconds / settings.frame_seconds))
    voiced = drop_short_regions(voiced, shortest)
    hang = int(round(settings.vad_hangover_seconds / settings.frame_seconds))
    if hang:
        kernel = np.ones(2 * hang + 1)
        # "full" then crop: mode="same" returns len(kernel) values when there are fewer frames.
        voiced = np.convolve(voiced.astype(float), kernel, mode="full")[hang : hang + n] > 0
    voiced &= energy > settings.vad_energy_dbfs
    return drop_short_regions(voiced, shortest)


def bridge_single_gaps(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every False frame between two True frames set True."""
    out = mask.copy()
    out[1:-1] |= mask[:-2] & mask[2:]
    return out


def regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def drop_short_regions(mask: np.ndarray, min_frames: int) -> np.ndarray:
    if min_frames <= 1 or not mask.any():
        return mask
    out = mask.copy()
    for start, end in zip(*regions(mask), strict=True):
        if end - start < min_frames:
            out[start:end] = False
    return out
