"""Whether a clip or a stream heard speech, from the model's verdict on each window.

The speech output judges every window that held enough voiced sound (:func:`accepted_as_speech`).
On music it is right most of the time and wrong now and then, and one accepted window used to be
enough to give a four-minute track a gender. So a clip is speech only when at least
``MIN_SPEECH_SHARE`` (half) of its judged windows were accepted; a stream applies the same share to its
judged windows of the last ``STREAM_SHARE_SECONDS``. Silence is never judged, so pauses do not count
against speech.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# A window whose p_speech is below this is not speech (music, animals, alarms): the default, and the
# floor of the threshold each model carries (chosen on held-out corpora, see train.evaluate).
SPEECH_THRESHOLD = 0.5
# At least half. Measured 2026-12-01 with the shipped lstm against the first rule (a fifth): 10 s
# pieces of unseen music given a gender 34 -> 15 of 591, shared non-speech held out in
# leave-one-corpus-out 8 -> 3 of 53, and not one held-out speech clip more lost on any of the 17
# corpora (gru: one Quran clip); one accepted window in any number was 39 of 67 whole tracks
# (docs/accuracy.md, fourth and fifth rounds).
MIN_SPEECH_SHARE = 0.5
# Audio a stream looks back over. Its windows overlap more than a file's (a 0.5 s hop against 1 s),
# so one false alarm spans several of them. Over 5 s, a voice that starts while music plays is
# announced 0.5 s later than under the first rule at the median (1.0-4.0 s after it starts, 7
# unseen tracks), and 7 of 51 unseen tracks streamed for 60 s raise a false alarm, against 11.
STREAM_SHARE_SECONDS = 5.0


def accepted_as_speech(p_speech: np.ndarray, threshold: float = SPEECH_THRESHOLD) -> np.ndarray:
    """Per window: the model took it for speech. NaN (a model without a speech output) accepts."""
    p_speech = np.asarray(p_speech, dtype=np.float64)
    return np.isnan(p_speech) | (p_speech >= threshold)


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
