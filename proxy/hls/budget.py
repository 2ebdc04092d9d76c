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

import itertools
import re
from collections.abc import Set
from dataclasses import dataclass

from proxy.errors import UpstreamTooLarge
from proxy.hls.media_model import Block
from proxy.hls.playlist_syntax import SEGMENT_TAGS

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
    #: placeholders of the skipped segments that are merged (upstream numbers only: their text is
    #: in the stitched playlist already)
    skipped: list[Block]
    media_sequence: int
    discontinuity_sequence: int


def unseen_tail(text: str, known: Set[int]) -> Tail | None:
    """The playlist from its first segment that is not ``known`` on, with the header's media
    sequence moved to that segment; None when no leading segment is known (rewrite it all) or the
    text is not a plain media playlist. A leading segment older than every known one has slid out
    of the stitched window already (NextPVR lists more than it holds): it is cut off too.

    Found with C-speed scans (``re``), not by splitting the playlist into lines: the point is to
    do little work for the part already seen (44 ms a refresh for 10,000 segments when split)."""
    if not known or "#EXT-X-STREAM-INF" in text or not text.startswith(("#EXTM3U", "\ufeff#EXTM3U")):
        return None
    first_block = _BLOCK_START.search(text)
    if first_block is None:
        return None
    header = text[:first_block.start()]
    m = _MEDIA_SEQUENCE.search(header)
    media_sequence = int(m.group(1)) if m else 0
    d = _DISCONTINUITY_SEQUENCE.search(header)
    discontinuity_sequence = int(d.group(1)) if d else 0
    segments = text.count("#EXTINF")
    oldest = min(known)
    skip = 0
    # segment i is numbered media_sequence + i (RFC 8216bis 6.3.5)
    while skip < segments and (media_sequence + skip in known or media_sequence + skip < oldest):
        skip += 1
    if skip == 0:
        return None
    last_skipped = next(itertools.islice(_URI_LINE.finditer(text, first_block.start()), skip - 1, None), None)
    if last_skipped is None:
        return None
    nl = "\r\n" if "\r\n" in header else "\n"
    header = _MEDIA_SEQUENCE_LINE.sub("", header)
    head, _, rest_of_header = header.partition("\n")
    header = f"{head}\n#EXT-X-MEDIA-SEQUENCE:{media_sequence + skip}{nl}{rest_of_header}"
    # only the known ones stand for the cut-off part: one older than the stitched window is not part
    # of it (and would read as NextPVR's numbering going back: a SequenceReset)
    skipped = [Block(seq, "", 0.0, False) for seq in range(media_sequence, media_sequence + skip) if seq in known]
    if not skipped:
        return None  # nothing listed is known (NextPVR numbered anew?): the full path checks for a reset
    return Tail(header + text[last_skipped.end():], skipped, media_sequence, discontinuity_sequence)


# where the rewriting pass ends the header (rewrite_pass.py, the same tag table): a segment tag (the
# whole name: not EXT-X-DISCONTINUITY-SEQUENCE) or a URI line
_BLOCK_START = re.compile(r"^(?:#(?:" + "|".join(re.escape(t) for t in sorted(SEGMENT_TAGS, key=len, reverse=True))
                          + r")(?![A-Z0-9-])|[^#\s])", re.MULTILINE)
_URI_LINE = re.compile(r"^[^#\s][^\r\n]*(?:\r?\n|\Z)", re.MULTILINE)
_MEDIA_SEQUENCE = re.compile(r"^#EXT-X-MEDIA-SEQUENCE:[ \t]*(\d{1,18})", re.MULTILINE)
_MEDIA_SEQUENCE_LINE = re.compile(r"^#EXT-X-MEDIA-SEQUENCE:[^\n]*\n?", re.MULTILINE)
_DISCONTINUITY_SEQUENCE = re.compile(r"^#EXT-X-DISCONTINUITY-SEQUENCE:[ \t]*(\d{1,18})", re.MULTILINE)
