"""The proxy's own live media playlist (RFC 8216bis section 4.4), written from segment records.

Pure: no I/O, no aiohttp. The playlist is a sliding window of complete segments:

- ``EXT-X-MEDIA-SEQUENCE`` is the first listed segment's number; numbers only grow (a new muxing
  session of the same channel continues them, behind ``EXT-X-DISCONTINUITY``, and counts the
  discontinuity in ``EXT-X-DISCONTINUITY-SEQUENCE``, RFC 8216bis 4.4.3.3);
- ``EXT-X-TARGETDURATION`` is at least every listed EXTINF rounded to the nearest integer
  (4.4.3.1); the caller keeps it from going down during a session;
- ``EXT-X-PROGRAM-DATE-TIME`` on every segment: when the proxy received its first byte;
- ``EXT-X-INDEPENDENT-SEGMENTS``: every segment starts with PAT + PMT + a keyframe;
- ``EXT-X-ENDLIST`` once NextPVR has ended the stream.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Blocks", "PlaylistEntry", "media_playlist", "segment_block", "target_duration"]


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    sequence: int
    #: EXTINF seconds (the real duration, from the timestamps)
    duration: float
    #: time.time() of the segment's first byte
    program_date_time: float
    uri: str
    discontinuity: bool = False


def target_duration(durations: Sequence[float], floor: float) -> int:
    """The smallest integer no rounded EXTINF exceeds, and at least ``floor`` rounded up."""
    rounded = [math.floor(d + 0.5) for d in durations]
    return max([math.ceil(floor - 1e-9), 1, *rounded])


def _date_time(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


#: rendered segment lines by entry, kept by the caller between rebuilds (a timeshift window lists
#: thousands of segments and is rewritten at every segment or part: formatting the dates and
#: numbers again each time cost 25 ms for 3,600 segments, the cached join about 2 ms)
Blocks = MutableMapping[PlaylistEntry, str]


def segment_block(entry: PlaylistEntry, blocks: Blocks | None = None) -> str:
    """``[EXT-X-DISCONTINUITY] EXT-X-PROGRAM-DATE-TIME EXTINF URI`` of one segment, as one string."""
    if blocks is not None:
        hit = blocks.get(entry)
        if hit is not None:
            return hit
    text = (("#EXT-X-DISCONTINUITY\n" if entry.discontinuity else "")
            + f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(entry.program_date_time)}\n"
            f"#EXTINF:{entry.duration:.5f},\n{entry.uri}")
    if blocks is not None:
        blocks[entry] = text
    return text


def media_playlist(entries: Sequence[PlaylistEntry], *, target: int, discontinuity_sequence: int = 0,
                   ended: bool = False, tags: Sequence[str] = (), blocks: Blocks | None = None) -> bytes:
    """The playlist text; ``entries`` in sequence order, without gaps. ``tags`` (whole playlist tags
    such as ``EXT-X-START`` and ``EXT-X-DATERANGE``) go after the header; ``blocks``: the caller's
    cache of rendered segments."""
    if any(b.sequence != a.sequence + 1 for a, b in itertools.pairwise(entries)):
        raise ValueError("playlist entries must be consecutive")
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{entries[0].sequence if entries else 0}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    lines.extend(tags)
    lines.extend(segment_block(entry, blocks) for entry in entries)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()
