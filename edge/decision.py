"""Whether a clip or a stream heard speech, from the model's verdict on each window.

The speech output judges every window that held enough voiced sound. On long music it is right
most of the time and wrong now and then: on whole unseen music tracks the shipped lstm accepted
1-18 % of the windows, and one accepted window was enough to give a four-minute track a gender
(39 of 67 tracks; speech clips have most of their windows accepted). So a clip is speech only when
at least ``MIN_SPEECH_SHARE`` of its judged windows were accepted; a stream applies the same share
to its most recent judged windows. Silence is never judged, so pauses do not count against speech.
"""

from __future__ import annotations

from collections import deque

# A clip whose judged windows the model accepted less often than this is not speech: measured on
# 67 unseen music tracks (39 gendered with any accepted window, 0 with this share) and 4,301 clips
# of the shared speech corpora (not one more lost).
MIN_SPEECH_SHARE = 0.2
# Audio a stream looks back over. Its windows overlap more than a file's (a 0.5 s hop against 1 s),
# so one false alarm spans several of them: the share is taken over 10 s.
STREAM_SHARE_SECONDS = 10.0


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
