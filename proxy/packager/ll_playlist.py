"""The Low-Latency form of the proxy's live media playlist (RFC 8216bis 4.4.3.7-4.4.5.2, 6.2.5).

Pure, like ``playlist.py`` (whose entries and date format it shares). On top of the plain window:

- ``EXT-X-VERSION:9`` (EXT-X-SKIP needs it; hls.js and Apple's players read every LL tag from 9);
- ``EXT-X-SERVER-CONTROL``: ``CAN-BLOCK-RELOAD=YES``, ``PART-HOLD-BACK`` three part targets (the
  RFC's SHOULD; hls.js aims at it, so it is the latency a browser gets), ``CAN-SKIP-UNTIL`` six
  target durations (the RFC's minimum);
- ``EXT-X-PART-INF:PART-TARGET``: the configured part duration; no part is longer;
- ``EXT-X-PART`` lines only for segments that start within three target durations of the live
  edge (4.4.4.9: older parts SHOULD go), then the parts of the segment being written, after its
  ``EXT-X-PROGRAM-DATE-TIME`` (tags before a part apply to the segment it belongs to);
- ``EXT-X-PRELOAD-HINT:TYPE=PART`` for the part being written, always while live (hls.js reloads
  in a loop without one);
- ``skip=True``: the delta update of 6.2.5.1, ``EXT-X-SKIP:SKIPPED-SEGMENTS=n`` in place of the
  leading segments that end more than CAN-SKIP-UNTIL before the end of the playlist.

Players that do not know LL-HLS (ffmpeg, VLC) ignore these tags and play the segments.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.packager.playlist import Blocks, PlaylistEntry, _date_time, segment_block

__all__ = ["LiveEdge", "PartEntry", "can_skip_until", "ll_media_playlist", "part_hold_back"]

#: parts are listed for segments that start within this many target durations of the end
PART_TARGETS_LISTED = 3


@dataclass(frozen=True, slots=True)
class PartEntry:
    duration: float
    uri: str
    independent: bool = False


@dataclass(frozen=True, slots=True)
class LiveEdge:
    """The segment being written: its parts so far and the hinted next part."""

    sequence: int
    program_date_time: float
    parts: Sequence[PartEntry]
    hint_uri: str
    discontinuity: bool = False


def part_hold_back(part_target: float) -> float:
    return 3 * part_target


def can_skip_until(target: int) -> float:
    return 6.0 * target


def _part_line(part: PartEntry) -> str:
    independent = ",INDEPENDENT=YES" if part.independent else ""
    return f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{part.uri}"{independent}'


def _skipped(entries: Sequence[PlaylistEntry], edge: LiveEdge | None, target: int) -> int:
    total = sum(e.duration for e in entries) + (sum(p.duration for p in edge.parts) if edge else 0.0)
    limit = can_skip_until(target)
    skipped, ended_at = 0, 0.0
    for entry in entries[:-1]:
        ended_at += entry.duration
        if total - ended_at < limit:
            break
        skipped += 1
    return skipped


def ll_media_playlist(entries: Sequence[PlaylistEntry], parts: Mapping[int, Sequence[PartEntry]], *,
                      target: int, part_target: float, edge: LiveEdge | None, discontinuity_sequence: int = 0,
                      ended: bool = False, skip: bool = False, tags: Sequence[str] = (),
                      blocks: Blocks | None = None) -> bytes:
    """``entries``: the complete segments in order; ``parts[sequence]``: their parts; ``edge``: the
    segment being written (None once the stream ended); ``tags``: whole-playlist tags after the header
    (EXT-X-START, EXT-X-DATERANGE of the timeshift window: kept in a delta update too, since the
    server does not offer CAN-SKIP-DATERANGES)."""
    if any(b.sequence != a.sequence + 1 for a, b in itertools.pairwise(entries)):
        raise ValueError("playlist entries must be consecutive")
    if edge is not None and entries and edge.sequence != entries[-1].sequence + 1:
        raise ValueError("the live edge must follow the last complete segment")
    first = entries[0].sequence if entries else (edge.sequence if edge else 0)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"PART-HOLD-BACK={part_hold_back(part_target):.3f},CAN-SKIP-UNTIL={can_skip_until(target):.1f}",
        f"#EXT-X-PART-INF:PART-TARGET={part_target:.5f}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    lines.extend(tags)
    skipped = _skipped(entries, edge, target) if skip else 0
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    # the start of each segment, counted back from the end of the playlist
    end = sum(e.duration for e in entries) + (sum(p.duration for p in edge.parts) if edge else 0.0)
    start = 0.0
    horizon = PART_TARGETS_LISTED * target
    for i, entry in enumerate(entries):
        listed = end - start <= horizon
        start += entry.duration
        if i < skipped:
            continue
        if not listed:
            lines.append(segment_block(entry, blocks))
            continue
        if entry.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(entry.program_date_time)}")
        lines.extend(_part_line(p) for p in parts.get(entry.sequence, ()))
        lines.append(f"#EXTINF:{entry.duration:.5f},")
        lines.append(entry.uri)
    if edge is not None and not ended:
        if edge.parts:  # a segment's tags go with its first part, never dangle before the hint alone
            if edge.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(edge.program_date_time)}")
            lines.extend(_part_line(p) for p in edge.parts)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{edge.hint_uri}"')
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()
