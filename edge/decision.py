"""Whether a clip or a stream heard speech, from the model's verdict on each window.

The speech output judges every window that held enough voiced sound (:func:`accepted_as_speech`).
On music it is right most of the time and wrong now and then, and one accepted window used to be
enough to give a four-minute track a gender. So a clip is speech only when at least
``MIN_SPEECH_SHARE`` of its judged windows were accepted; a stream applies the same share to its
judged windows of the last ``STREAM_SHARE_SECONDS``. Silence is never judged, so pauses do not count
against speech.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# A window whose p_speech is below this is not speech (music, animals, alarms).
SPEECH_THRESHOLD = 0.5
# Measured 2026-12-01 with the shipped lstm on 67 whole music tracks it never trained on: 39 got a
# gender from any accepted window, none with this share; in leave-one-corpus-out, no held-out speech
# clip more was lost on any of the 17 corpora (docs/accuracy.md, fourth round).
MIN_SPEECH_SHARE = 0.2
# Audio a stream looks back over. Its windows overlap more than a file's (a 0.5 s hop against 1 s),
# so one false alarm spans several of them: the share is taken over 10 s.
STREAM_SHARE_SECONDS = 10.0


def accepted_as_speech(p_speech: np.ndarray) -> np.ndarray:
    """Per window: the model took it for speech. NaN (a model without a speech output) accepts."""
    p_speech = np.asarray(p_speech, dtype=np.float64)
    return np.isnan(p_speech) | (p_speech >= SPEECH_THRESHOLD)


def enough_speech(accepted: int, judged: int) -> bool:
    """True when ``accepted`` of ``judged`` windows make the sound speech."""
    return accepted > 0 and accepted >= MIN_SPEECH_SHARE * judged


class RecentShare:
    """The share rule over a stream's judged windows of the last ``STREAM_SHARE_SECONDS``."""

    def __init__(self, hop_seconds: float):
        self._recent: deque[bool] = deque(maxlen=max(1, round(STREAM_SHARE_SECONDS / hop_seconds)))

    def add(self, accepted: bool) -> bool:
        """Record one judged window; True when it counts as speech."""
        self._recent.append(accepted)
        return accepted and enough_speech(sum(self._recent), len(self._recent))

    def clear(self) -> None:
        """After silence a new sound starts: what came before does not count against it."""
        self._recent.clear()
