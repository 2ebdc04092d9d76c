"""Joining a new upstream connection onto the old one without a seam.

A re-opened ``/live`` connection (a broken socket, NextPVR restarting) starts with its own
timestamps and continuity counters. ffmpeg's HLS reader ignores ``EXT-X-DISCONTINUITY``, and every
ffmpeg-based server (Jellyfin, Emby, Plex) with it, so the proxy makes the new connection continue
the old one instead:

- the old timeline's end is read once from the bytes already packaged (:func:`timeline_end`);
- every PTS/DTS/PCR of the new connection is shifted by one offset, chosen so that its first
  keyframe decodes one frame after the old last frame and is presented after the old last picture;
- audio of the new connection that would overlap what was already sent is replaced by null
  packets (same length, so the analyzer's offsets stay valid), up to the first audio PES after it;
- every PID's continuity counter is moved on by a constant, so it continues from the old value.

Within one connection nothing is touched; the splice costs per-packet work only after a reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.media.packets import NULL_PID, PACKET_SIZE, packet_pid
from proxy.media.timeline import NULL_PACKET, TimelineEnd, join_offset, timeline_end
from proxy.media.timestamps import pes_timestamps, shift_timestamps, ticks_between

__all__ = ["Splicer", "TimelineEnd", "drop_unfinished", "timeline_end"]

def drop_unfinished(data: bytes, pids: Iterable[int]) -> bytes:
    """``data`` with the last PES of each of ``pids`` replaced by null packets (same length).

    A broken connection leaves the PES it was sending half-received (a video PES has no length to
    tell), and a decoder complains about the torn frame; the last complete frame is a clean end.
    Dropping the last frame in decode order never orphans a reference (nothing decoded before it
    refers to it)."""
    wanted = set(pids)
    last: dict[int, int] = {}
    size = len(data) - len(data) % PACKET_SIZE
    for off in range(0, size, PACKET_SIZE):
        pid = packet_pid(data, off)
        if pid in wanted and data[off + 1] & 0x40:
            last[pid] = off
    if not last:
        return data
    buf = bytearray(data)
    for off in range(min(last.values()), size, PACKET_SIZE):
        pid = packet_pid(buf, off)
        if pid in last and off >= last[pid]:
            buf[off : off + PACKET_SIZE] = NULL_PACKET
    return bytes(buf)


class Splicer:
    """Rewrites the packets of a re-opened connection to continue ``end``."""

    def __init__(self) -> None:
        self.active = False
        #: ticks added to every timestamp of the current connection (after the first splice)
        self.offset = 0
        self._end = TimelineEnd()
        self._video_pid: int | None = None
        self._cc_delta: dict[int, int] = {}
        self._waiting_audio: dict[int, int] = {}
        self._have_offset = False

    def splice(self, end: TimelineEnd) -> None:
        """A new connection follows: continue ``end`` (the bytes packaged so far)."""
        self.active = bool(end.next_cc)
        self._end = end
        self._cc_delta = {}
        self._have_offset = False

    def apply(self, packets: bytes, keyframes: list[int], video_pid: int | None,
              audio_pids: tuple[int, ...]) -> bytes:
        """``packets`` rewritten; the same length, so keyframe offsets stay valid."""
        if not self.active:
            return packets
        start = 0
        if not self._have_offset:
            if not keyframes or video_pid is None:
                return packets  # the segmenter waits for a keyframe and drops what comes before
            start = keyframes[0]
            if not self._start(packets, start, video_pid, audio_pids):
                return packets
        buf = bytearray(packets[start:])
        shift_timestamps(buf, self.offset)
        self._fix_packets(buf)
        return packets[:start] + bytes(buf) if start else bytes(buf)

    def _start(self, packets: bytes, keyframe: int, video_pid: int, audio_pids: tuple[int, ...]) -> bool:
        pts, dts = pes_timestamps(packets, keyframe)
        if pts is None:
            return False
        old = self._end.last.get(video_pid)
        # decode one frame after the old last frame, and never present before its last picture
        self.offset = 0 if old is None else join_offset(old, pts, dts)
        self._waiting_audio = {}
        for pid in audio_pids:
            if pid in self._end.last:
                _, last_pts, step = self._end.last[pid]
                self._waiting_audio[pid] = last_pts + step
        self._have_offset = True
        return True

    def _fix_packets(self, buf: bytearray) -> None:
        waiting = self._waiting_audio
        deltas = self._cc_delta
        following = self._end.next_cc
        for off in range(0, len(buf), PACKET_SIZE):
            pid = ((buf[off + 1] & 0x1F) << 8) | buf[off + 2]
            if pid == NULL_PID:
                continue
            if pid in waiting:
                if buf[off + 1] & 0x40:
                    pts, _ = pes_timestamps(buf, off)
                    if pts is not None and ticks_between(waiting[pid], pts) >= 0:
                        del waiting[pid]
                if pid in waiting:
                    buf[off : off + PACKET_SIZE] = NULL_PACKET
                    continue
            delta = deltas.get(pid)
            b3 = buf[off + 3]
            if delta is None:
                expected = following.get(pid, b3 & 0x0F)
                # a packet without payload repeats the counter: it must follow the old one's repeat
                cc = b3 & 0x0F if b3 & 0x10 else (b3 + 1) & 0x0F
                delta = deltas[pid] = (expected - cc) & 0x0F
            if delta:
                buf[off + 3] = (b3 & 0xF0) | ((b3 + delta) & 0x0F)
