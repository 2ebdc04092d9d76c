"""Media sequence numbers from the wall clock, for a live playlist that starts numbering afresh.

A replica that takes a channel over after another died (or a proxy restarted) must number its
segments strictly above every number the old one listed: hls.js refuses a playlist that gives a
number it already saw to another segment ("media sequence mismatch", a fatal error), and ffmpeg
waits for numbers it already had. Both replicas number from the clock, so the new one's numbers are
higher when the clock runs faster than any replica's own numbering does: ten numbers a second
against one per segment (segments last 0.5 s or more; NextPVR's 1-10 s), which stays true even
right after the old replica started with a burst of segments listed at once (a transcode's first
playlist lists up to a few: overtaken within a second).

Counted from 2026-01-01 so the numbers stay below 2**31 for more than six years (some players keep
them in 32-bit integers).
"""

from __future__ import annotations

from typing import Final

__all__ = ["NUMBERS_PER_SECOND", "wall_clock_sequence"]

#: 2026-01-01T00:00:00Z
_EPOCH: Final = 1_767_225_600
NUMBERS_PER_SECOND: Final = 10


def wall_clock_sequence(now: float) -> int:
    """The number of a fresh live playlist's first segment started at Unix time ``now``."""
    return max(0, int((now - _EPOCH) * NUMBERS_PER_SECOND))
