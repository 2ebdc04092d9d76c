"""What one upstream playlist may cost: bounds on its lines, segments and rewritten size, and
the part of a growing live playlist that still needs rewriting.

``hls.playlist_max_bytes`` bounds the bytes NextPVR sends, but not the work or the memory they
cause: a 15.9 MB playlist of 1-byte URIs became a 177 MB rewritten playlist and a 1.21 GB peak
(every line is a Python string, every URI a ~100-byte signed URL). So before anything is split,
:func:`check_counts` counts segments and lines in the text itself (``str.count``: no allocation),
and :class:`OutputBudget` stops a rewrite whose output outgrows the limit. Both raise
:class:`~proxy.errors.UpstreamTooLarge` (502, a clear message).

A live EVENT playlist (a recording in progress) only grows: re-rewriting the whole of it at every
refresh cost 9.5 CPU-seconds in 12 for a 1 MB playlist. :func:`unseen_tail` cuts off the leading
segments already merged into the stitched playlist, so only the new lines are rewritten.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from proxy.errors import UpstreamTooLarge
from proxy.hls.stitch import Block, split_media_playlist

__all__ = ["LINES_PER_SEGMENT", "OutputBudget", "Tail", "check_counts", "unseen_tail"]

#: lines a playlist may have per allowed segment (EXTINF, URI, PDT, BYTERANGE, KEY, MAP, DATERANGE,
#: LL-HLS parts of the last segments...): generous for real playlists, a bound on the line list
LINES_PER_SEGMENT = 10


def check_counts(text: str, *, max_segments: int, what: str) -> None:
    """Refuse a playlist with more segments (``#EXTINF``) or lines than allowed, before it is split."""
    segments = text.count("#EXTINF")
    if segments > max_segments:
        raise UpstreamTooLarge(f"NextPVR's playlist for {what} lists more than {max_segments} segments")
    if text.count("\n") > max_segments * LINES_PER_SEGMENT + 64:
        raise UpstreamTooLarge(f"NextPVR's playlist for {what} has more than "
                               f"{max_segments * LINES_PER_SEGMENT} lines")


class OutputBudget:
    """Counts the characters of a rewrite as its chunks come; over ``max_chars`` it raises."""

    __slots__ = ("_left", "_max", "_what")

    def __init__(self, max_chars: int, *, what: str) -> None:
        self._max = max_chars
        self._left = max_chars
        self._what = what

    def spend(self, chunk: str) -> None:
        self._left -= len(chunk)
        if self._left < 0:
            raise UpstreamTooLarge(f"NextPVR's playlist for {self._what} would be larger than "
                                   f"{self._max} bytes once rewritten")


@dataclass(frozen=True, slots=True)
class Tail:
    """An upstream media playlist without its first ``skipped`` segments (already merged)."""

    text: str
    #: placeholders of the skipped segments (upstream numbers only: their text is already merged)
    skipped: list[Block]
    media_sequence: int
    discontinuity_sequence: int


def unseen_tail(text: str, known: Set[int]) -> Tail | None:
    """The playlist from its first segment that is not ``known`` on, with the header's media
    sequence moved to that segment; None when no leading segment is known (rewrite it all) or the
    text is not a plain media playlist. A leading segment older than every known one has slid out
    of the stitched window already (NextPVR lists more than it holds): it is cut off too."""
    try:
        parsed = split_media_playlist(text)
    except ValueError:
        return None
    skip = 0
    oldest = min(known, default=None)
    for block in parsed.blocks:
        if oldest is None or (block.upstream_seq not in known and block.upstream_seq >= oldest):
            break
        skip += 1
    if skip == 0:
        return None
    first = parsed.media_sequence + skip
    nl = parsed.newline
    header = [line for line in parsed.header if not line.strip().startswith("#EXT-X-MEDIA-SEQUENCE:")]
    # the sequence goes right after #EXTM3U (line 0): its place in the header does not matter
    header.insert(1, f"#EXT-X-MEDIA-SEQUENCE:{first}{nl}")
    if not header[0].endswith(("\n", "\r")):
        header[0] += nl
    rest = [b.text for b in parsed.blocks[skip:]]
    skipped = [Block(b.upstream_seq, "", b.duration, b.discontinuity) for b in parsed.blocks[:skip]]
    return Tail("".join([*header, *rest, *parsed.trailer]), skipped, parsed.media_sequence,
                parsed.discontinuity_sequence)
