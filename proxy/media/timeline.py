"""Where an MPEG-TS timeline stops, and the offset that makes a second stream continue it.

Shared by the two places that join a new upstream stream onto bytes already sent: the remux
packager (a re-opened ``/live`` connection, ``proxy/packager/splice.py``) and the HLS transcode
path (a new NextPVR transcode after a restart, ``proxy/hls/continuity.py``). Pure functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from proxy.media.packets import NULL_PID, PACKET_SIZE, Buffer, packet_pid, payload_offset
from proxy.media.timestamps import pes_timestamps, ticks_between

__all__ = ["NULL_PACKET", "TimelineEnd", "is_video_pes", "join_offset", "timeline_end"]

#: a null packet (PID 0x1FFF): replaces a packet without changing any offset
NULL_PACKET: Final = bytes((0x47, 0x1F, 0xFF, 0x10)) + b"\xff" * (PACKET_SIZE - 4)


@dataclass(slots=True)
class TimelineEnd:
    """Where the bytes sent so far stop, per PID."""

    #: the continuity counter the next payload packet of each PID must carry
    next_cc: dict[int, int] = field(default_factory=dict)
    #: PID -> (largest DTS, largest PTS, one frame's ticks)
    last: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: PIDs whose PES stream_id says video (0xE0-0xEF)
    video: set[int] = field(default_factory=set)


def is_video_pes(data: Buffer, offset: int) -> bool:
    """The packet at ``offset`` starts a PES whose stream_id is an MPEG video stream."""
    start = payload_offset(data, offset)
    return (start is not None and start + 4 <= offset + PACKET_SIZE
            and data[start : start + 3] == b"\x00\x00\x01" and 0xE0 <= data[start + 3] <= 0xEF)


def timeline_end(chunks: Iterable[bytes]) -> TimelineEnd:
    end = TimelineEnd()
    times: dict[int, list[tuple[int, int]]] = {}
    for data in chunks:
        for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
            pid = packet_pid(data, off)
            if pid == NULL_PID:
                continue
            b3 = data[off + 3]
            # a packet without payload repeats its PID's counter: either way the next payload gets +1
            end.next_cc[pid] = ((b3 & 0x0F) + 1) & 0x0F
            if data[off + 1] & 0x40:
                pts, dts = pes_timestamps(data, off)
                if pts is not None:
                    times.setdefault(pid, []).append((pts if dts is None else dts, pts))
                    if pid not in end.video and is_video_pes(data, off):
                        end.video.add(pid)
    for pid, stamps in times.items():
        steps = [ticks_between(a[0], b[0]) for a, b in itertools.pairwise(stamps)]
        step = min((s for s in steps if s > 0), default=0)
        last_dts = max((d for d, _ in stamps), key=lambda d: ticks_between(stamps[0][0], d))
        last_pts = max((p for _, p in stamps), key=lambda p: ticks_between(stamps[0][1], p))
        end.last[pid] = (last_dts, last_pts, step)
    return end


def join_offset(old: tuple[int, int, int], pts: int, dts: int | None) -> int:
    """Ticks to add to a new stream whose first frame has ``pts``/``dts`` so that it decodes one
    frame after ``old``'s last frame (``timeline_end`` of the stream it continues) and is never
    presented before ``old``'s last picture."""
    old_dts, old_pts, step = old
    new_dts = pts if dts is None else dts
    return max(ticks_between(new_dts, old_dts + step), ticks_between(pts, old_pts + step))
