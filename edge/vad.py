"""A cheap speech detector on the frame analysis: loud enough, voiced at a speaking pitch, and alive.

Silence, hiss and room noise are not periodic between 70 and 500 Hz; speech is, for most of its
duration. Hum and buzz are periodic too, but hold pitch and level perfectly still; speech never does.
The decision for a frame depends only on its own analysis plus the analysis window's noise floor, so
files, streams and training see the same result. Music and other periodic sounds that pass here
are the model's to reject (its ``p_speech`` output).
"""

from __future__ import annotations

import math

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

    A run is anchored at its first frame and lasts while later frames stay close to that frame; the
    frame that strays anchors the next run. Only stretches that can hold a long run are followed
    (:func:`_stretches`); in them, where a run anchored at each frame ends is found for all frames at
    once, and then only the chain of actual anchors is walked.
    """
    n = f0.size
    if min_frames <= 1:  # every run is long enough
        return np.ones(n, dtype=bool)
    steady = np.zeros(n, dtype=bool)
    for lo, hi in _stretches(f0, energy_db, min_frames):
        pitch, level = f0[lo:hi], energy_db[lo:hi]
        start = 0
        for end in _anchored(_run_ends(pitch, level, min_frames).tolist(), pitch, level, min_frames):
            if end - start >= min_frames:
                steady[lo + start : lo + end] = True
            start = end
    return steady


def _stretches(f0: np.ndarray, energy_db: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """(first, end) of each stretch of at least ``min_frames`` frames that may hold a long run.

    Two frames of one run are both within 2 % and 3 dB of its anchor, so neighbours that differ by
    more than 5 % in pitch or 6.5 dB in level (margins well above 4.1 % and 6 dB) never share a run:
    the later one anchors a new run. The stretches between such breaks are independent, each begins
    with an anchor, and one shorter than ``min_frames`` cannot hold a long run. In speech there is
    usually none.
    """
    before, after = f0[:-1], f0[1:]
    linked = ((before > 0) & (after > 0) & (np.abs(energy_db[1:] - energy_db[:-1]) <= 6.5)
              & (np.abs(after - before) <= 0.05 * np.maximum(before, after)))
    first, last = regions(linked)  # links first..last-1 join frames first..last
    long = last + 1 - first >= min_frames
    return list(zip(first[long].tolist(), (last[long] + 1).tolist(), strict=True))


def _strays(f0: np.ndarray, energy_db: np.ndarray, anchor_f0, anchor_db) -> np.ndarray:
    """Which frames stray from an anchor's pitch (2 %) or level (3 dB); array arithmetic in the
    arrays' own dtypes, as the comparisons of one frame with another always were."""
    return ~((np.abs(f0 - anchor_f0) <= 0.02 * anchor_f0) & (np.abs(energy_db - anchor_db) <= 3.0) & (anchor_f0 > 0))


def _run_ends(f0: np.ndarray, energy_db: np.ndarray, lookahead: int) -> np.ndarray:
    """For every frame, the end of a run anchored there, looking at most ``lookahead`` frames ahead:
    ``frame + lookahead + 1`` means "at least that far"."""
    n = f0.size
    # Past the last frame the pitch is 0, which strays from every anchor: runs end with the signal.
    ahead = np.lib.stride_tricks.sliding_window_view(np.concatenate([f0, np.zeros(lookahead, f0.dtype)]),
                                                     lookahead + 1)
    levels = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([energy_db, np.zeros(lookahead, energy_db.dtype)]), lookahead + 1)
    strays = _strays(ahead[:, 1:], levels[:, 1:], ahead[:, :1], levels[:, :1])
    first = np.where(strays.any(axis=1), np.argmax(strays, axis=1), lookahead)
    return np.arange(n) + 1 + first


def _anchored(ends: list[int], f0: np.ndarray, energy_db: np.ndarray, lookahead: int):
    """The end of each run, following the anchors from frame 0; a run longer than the lookahead is
    measured to its end (hum: rare)."""
    n, start = len(ends), 0
    while start < n:
        end = ends[start]
        if end - start > lookahead:
            later = _strays(f0[end:], energy_db[end:], f0[start], energy_db[start])
            end += int(np.argmax(later)) if later.any() else later.size
        yield end
        start = end


def percentile(values: np.ndarray, q: float) -> np.floating:
    """``np.percentile(values, q)`` of a 1-D array (linear interpolation), to the bit, without its
    overhead: a partial sort around the two neighbours, then NumPy's own interpolation formula."""
    n = values.size
    index = (n - 1) * (q / 100)
    if index >= n - 1:  # NumPy takes the maximum, and counts the weight from index -1
        lo, hi, t = n - 1, n - 1, index + 1
    else:
        lo = math.floor(index)
        hi, t = lo + 1, index - lo
    # The same selection as NumPy's (which also places the first and last elements), so that equal
    # values of different sign (0.0, -0.0) land where its own would.
    part = np.partition(values, sorted({0, lo, hi, n - 1}))
    a, b = part[lo], part[hi]
    # NumPy's _lerp in the values' dtype: from the nearer neighbour.
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def speech_mask(stats: FrameStats, settings: FeatureSettings) -> np.ndarray:
    """Boolean per frame of ``stats`` (one analysis window): True where speech is."""
    n = len(stats)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if not settings.vad:
        return np.ones(n, dtype=bool)
    energy = stats.energy_db
    floor = percentile(energy, 10)
    audible = energy > settings.vad_energy_dbfs
    loud = audible & (energy > floor + _FLOOR_MARGIN_DB)
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
        voiced = widen(voiced, hang)
    voiced &= audible
    return drop_short_regions(voiced, shortest)


def bridge_single_gaps(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every False frame between two True frames set True."""
    out = mask.copy()
    out[1:-1] |= mask[:-2] & mask[2:]
    return out


def widen(mask: np.ndarray, frames: int) -> np.ndarray:
    """True within ``frames`` of a True frame: a running count of the Trues in each 2 * frames + 1
    neighbourhood, as the difference of a cumulative sum."""
    padded = np.zeros(mask.size + 2 * frames + 1, dtype=np.int64)
    np.cumsum(mask, out=padded[frames + 1 : frames + 1 + mask.size])
    padded[frames + 1 + mask.size :] = padded[frames + mask.size]
    return padded[2 * frames + 1 :] > padded[: mask.size]


def regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in ``mask``."""
    padded = np.zeros(mask.size + 2, dtype=bool)
    padded[1:-1] = mask
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # a start, its end, the next start, ...
    return edges[0::2], edges[1::2]


def drop_short_regions(mask: np.ndarray, min_frames: int) -> np.ndarray:
    """``mask`` without its runs of True shorter than ``min_frames`` (``mask`` itself when none can be)."""
    if min_frames <= 1 or not mask.any():
        return mask
    starts, ends = regions(mask)
    short = ends - starts < min_frames
    if not short.any():
        return mask.copy()
    # +1 where a short run starts, -1 where it ends: the running sum is 1 inside short runs only.
    marks = np.zeros(mask.size + 1, dtype=np.int8)
    marks[starts[short]] = 1
    marks[ends[short]] = -1
    return mask & (np.cumsum(marks[:-1]) == 0)
