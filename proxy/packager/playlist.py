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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["PlaylistEntry", "media_playlist", "target_duration"]


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


def media_playlist(entries: Sequence[PlaylistEntry], *, target: int, discontinuity_sequence: int = 0,
                   ended: bool = False, tags: Sequence[str] = ()) -> bytes:
    """The playlist text; ``entries`` in sequence order, without gaps. ``tags`` (whole playlist tags
    such as ``EXT-X-START`` and ``EXT-X-DATERANGE``) go after the header."""
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
    for entry in entries:
        if entry.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(entry.program_date_time)}")
        lines.append(f"#EXTINF:{entry.duration:.5f},")
        lines.append(entry.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()
