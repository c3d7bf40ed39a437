"""The audio-length limit, checked before any model work.

WAV, FLAC, OGG (libsndfile) state their length in the header, which libsndfile derives from the data
itself. Compressed formats read through PyAV are counted by decoding, stopping as soon as the limit is
passed, so a file with a lying header costs at most the limit's worth of decoding.
"""

from __future__ import annotations

from pathlib import Path

from ..audio import SOUNDFILE_EXTENSIONS, open_audio
from .errors import ApiError


def too_long(seconds: float | None, limit: float) -> ApiError:
    told = f"{seconds:.1f} s" if seconds is not None else f"more than {limit:g} s"
    return ApiError(422, "audio_too_long", f"the recording is {told}; the limit is {limit:g} s",
                    max_audio_seconds=limit)


def check_duration(path: Path, limit: float) -> None:
    info, blocks = open_audio(path)
    try:
        if path.suffix.lower() in SOUNDFILE_EXTENSIONS and info.duration > 0:
            if info.duration > limit:
                raise too_long(info.duration, limit)
            return
        if info.sample_rate <= 0:
            return  # the decoder will refuse it with its own message
        frames, most = 0, int(limit * info.sample_rate)
        for block in blocks:
            frames += len(block)
            if frames > most:
                raise too_long(None, limit)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
