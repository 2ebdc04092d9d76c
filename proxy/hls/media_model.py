"""A live media playlist cut into header, segment blocks and trailer: what the stitcher merges.

The rewriting pass (``rewrite_pass.py``) records where each segment ends in its output lines, its
EXTINF duration and its discontinuities while it rewrites; :func:`build_media` turns those marks
and the rewritten lines into a :class:`ParsedMedia` without reading the text again. ``stitch.py``
merges it into the live window; the packager's playlist writer is meant to reuse the same model.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.hls.playlist_syntax import PlaylistError

__all__ = ["Block", "ParsedMedia", "SegmentMarks", "build_media"]


@dataclass(frozen=True, slots=True)
class Block:
    """One media segment: every output line after the previous segment's URI line up to its own."""

    upstream_seq: int
    text: str
    duration: float
    #: the block itself carries an EXT-X-DISCONTINUITY tag
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class ParsedMedia:
    header: list[str]
    blocks: list[Block]
    trailer: list[str]
    media_sequence: int
    discontinuity_sequence: int
    target_duration: int
    endlist: bool
    newline: str


@dataclass(frozen=True, slots=True)
class SegmentMarks:
    """What the pass recorded, as indices into its line list (input numbering, dropped lines
    still in place as the pass's drop marker)."""

    #: the first segment tag or URI line that was kept (-1: none): the header ends before it
    body_start: int
    #: the URI line of each kept media segment, in order
    uris: Sequence[int]
    #: the EXTINF duration of each segment (0.0 without one)
    durations: Sequence[float]
    #: the lines that are a plain ``EXT-X-DISCONTINUITY`` tag
    discontinuities: Sequence[int]
    #: an ``EXT-X-STREAM-INF`` was seen: not a media playlist
    variant_streams: bool


def build_media(lines: list[str], dropped: str, marks: SegmentMarks, *, media_sequence: int,
                discontinuity_sequence: int, target_duration: int, endlist: bool) -> ParsedMedia:
    """The rewritten ``lines`` (the pass's list; ``dropped`` is its marker, compared by identity)
    cut at the recorded marks. Every output line keeps its line break, as in the served text.
    Raises :class:`PlaylistError` (a ``ValueError``) for a multivariant playlist."""
    if marks.variant_streams:
        raise PlaylistError("a multivariant playlist, not a media playlist")
    n = len(lines)
    last = n - 1
    while last >= 0 and lines[last] is dropped:
        last -= 1
    first = lines[0] if n else ""
    newline = "\r\n" if first.endswith("\r") and n > 1 else "\n"

    def out(start: int, stop: int) -> list[str]:
        # the output is "\n".join of the kept lines: each is followed by a break but the last one
        return [line + "\n" if i < last else line
                for i, line in enumerate(lines[start:stop], start) if line is not dropped and
                (i < last or line)]

    uris = marks.uris
    body = marks.body_start if marks.body_start >= 0 else n
    if uris:
        body = min(body, uris[0])
    header = out(0, body)
    blocks: list[Block] = []
    start = body
    for k, uri in enumerate(uris):
        blocks.append(Block(media_sequence + k, "".join(out(start, uri + 1)), marks.durations[k], False))
        start = uri + 1
    for d in marks.discontinuities:
        k = bisect_left(uris, d)
        if k < len(blocks) and d >= body:
            blocks[k] = Block(blocks[k].upstream_seq, blocks[k].text, blocks[k].duration, True)
    trailer = out(start, n)
    if trailer and not trailer[-1].endswith(("\n", "\r")):
        trailer[-1] += newline
    return ParsedMedia(header, blocks, trailer, media_sequence, discontinuity_sequence,
                       target_duration, endlist, newline)
