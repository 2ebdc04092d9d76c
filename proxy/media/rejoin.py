"""Rewriting the segments of a new MPEG-TS stream so that they continue an old stream's timeline.

Pure; ``proxy/hls/continuity.py`` feeds it a segment's chunks as they arrive from NextPVR. Every
segment keeps its size but the anchor, which may grow by the silence below. A :class:`Join` is
fixed once per new stream by its first segment, the *anchor*, rewritten whole:

- one timestamp offset, so that the anchor's first video frame decodes one frame after the old
  stream's last (``timeline.join_offset``);
- audio that would overlap what the old stream played is removed: whole ADTS (AAC) frames, so the
  audio goes on within one frame; other codecs whole PES (replaced by null packets);
- AAC-LC audio that starts later than the old audio ended is preceded by silent frames
  (``aac_silence.py``) in a PES of its own from the old end, so the decoded audio goes on within one
  frame while the new audio keeps its timestamps (A/V sync); other codecs keep their gap;
- the continuity counters of every PID renumbered from the old stream's, and per PID the constant
  that moves the counters of every later segment on by as much.

Later segments of the stream get the same offset and constants, streamed, so the result does not
depend on the order in which segments are fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from proxy.media.aac_silence import silent_frame
from proxy.media.adts import adts_frames, frame_ticks
from proxy.media.packets import NULL_PID, PACKET_SIZE, Buffer, payload_offset
from proxy.media.timeline import NULL_PACKET, TimelineEnd, is_video_pes, join_offset
from proxy.media.timestamps import (
    ContinuityRewriter,
    add_continuity,
    pes_timestamps,
    read_pes_timestamp,
    shift_timestamps,
    ticks_between,
    write_pes_timestamp,
)

__all__ = ["Join", "SegmentRewriter", "audio_ends", "first_timestamp"]

_SYNC: Final = 0x47
#: a stream's first timestamp is looked for in this many leading bytes of a segment passed unchanged
_HEAD_BYTES: Final = 64 * 1024
#: the most silent frames put into one gap (~1 s at 48 kHz): a longer hole is no splice's rounding
_MAX_SILENT_FRAMES: Final = 48


def first_timestamp(data: Buffer) -> int | None:
    """The first PES timestamp (DTS, else PTS) in the whole packets of ``data``."""
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        if data[off] == _SYNC and data[off + 1] & 0x40:
            pts, dts = pes_timestamps(data, off)
            if pts is not None:
                return pts if dts is None else dts
    return None


def _pid(data: Buffer, off: int) -> int:
    return ((data[off + 1] & 0x1F) << 8) | data[off + 2]


def _first_frame(data: Buffer, *, video_only: bool) -> tuple[int, int, int | None] | None:
    """(PID, PTS, DTS) of the first PES with a timestamp (of a video stream if ``video_only``)."""
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        if data[off] == _SYNC and data[off + 1] & 0x40:
            pts, dts = pes_timestamps(data, off)
            if pts is not None and (not video_only or is_video_pes(data, off)):
                return _pid(data, off), pts, dts
    return None


@dataclass(slots=True)
class _Pes:
    packets: list[int]
    data: bytearray


def _pes_list(data: Buffer, pid: int) -> list[_Pes]:
    """Every PES of ``pid`` that starts in ``data``: its packets' offsets and its bytes."""
    found: list[_Pes] = []
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        if data[off] != _SYNC or _pid(data, off) != pid:
            continue
        start = payload_offset(data, off)
        if data[off + 1] & 0x40:
            found.append(_Pes([], bytearray()))
        if found:
            found[-1].packets.append(off)
            if start is not None:
                found[-1].data += data[start : off + PACKET_SIZE]
    return found


def _pes_frames(pes: Buffer) -> tuple[int, list[tuple[int, int]]] | None:
    """(PTS, ADTS frames) of a PES of AAC; None for anything else."""
    if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
        return None
    frames = adts_frames(pes, 9 + pes[8])
    return (read_pes_timestamp(pes, 9), frames) if frames else None


def audio_ends(data: Buffer, end: TimelineEnd) -> dict[int, int]:
    """PID -> the PTS right after the last AAC frame of ``data`` (its exact end), for the PIDs of
    ``end`` that are not video and whose last PES is whole AAC."""
    ends: dict[int, int] = {}
    for pid in end.last:
        if pid in end.video:
            continue
        pes = _pes_list(data, pid)
        parsed = _pes_frames(pes[-1].data) if pes else None
        if parsed is not None:
            pts, frames = parsed
            ends[pid] = pts + round(sum(frame_ticks(pes[-1].data, o) for o, _ in frames))
    return ends


@dataclass(slots=True)
class Join:
    """How a new stream continues ``base`` (None: there is nothing to continue)."""

    base: TimelineEnd | None
    #: PID -> exact end of the old stream's audio (``audio_ends``)
    exact_ends: dict[int, int] = field(default_factory=dict)
    #: ticks added to every PTS/DTS (and, times 300, PCR); None until the anchor fixed it
    offset: int | None = None
    #: PID -> added (mod 16) to the continuity counters of every segment after the anchor
    cc_delta: dict[int, int] = field(default_factory=dict)
    #: the anchor was rewritten to its end: later segments may use this join
    complete: bool = False


def _write_pes(buf: bytearray, packets: list[int], pes: bytes) -> None:
    """Put ``pes`` into ``packets`` (it is no longer than they held): stuffing in the adaptation
    field of the last one used, null packets for the ones left over."""
    pos = 0
    for i, off in enumerate(packets):
        if pos >= len(pes):
            buf[off : off + PACKET_SIZE] = NULL_PACKET
            continue
        take = min(PACKET_SIZE - 4, len(pes) - pos)
        head = bytes((_SYNC, (buf[off + 1] & 0x1F) | (0x40 if i == 0 else 0), buf[off + 2]))
        cc = buf[off + 3] & 0x0F
        if take == PACKET_SIZE - 4:
            packet = head + bytes((0x10 | cc,)) + pes[pos : pos + take]
        else:
            af_len = PACKET_SIZE - 4 - take - 1
            stuffing = bytes((af_len,)) + (bytes((0x00,)) + b"\xff" * (af_len - 1) if af_len else b"")
            packet = head + bytes((0x30 | cc,)) + stuffing + pes[pos : pos + take]
        buf[off : off + PACKET_SIZE] = packet
        pos += take


def _trim_audio(buf: bytearray, pid: int, until: int, offset: int, exact: bool) -> None:
    """Remove the audio of ``pid`` that (shifted by ``offset``) would play before ``until``."""
    for pes in _pes_list(buf, pid):
        parsed = _pes_frames(pes.data) if exact else None
        if parsed is None:
            pts, _ = pes_timestamps(buf, pes.packets[0])
            if pts is None or ticks_between(until, pts + offset) >= 0:
                return
            for off in pes.packets:
                buf[off : off + PACKET_SIZE] = NULL_PACKET
            continue
        pts, frames = parsed
        kept = None
        at = float(pts + offset)
        for n, (frame_offset, _) in enumerate(frames):
            ticks = frame_ticks(pes.data, frame_offset)
            if ticks_between(until, round(at + ticks / 2)) > 0:  # plays mostly after the old end
                kept = n
                break
            at += ticks
        if kept == 0:
            return
        if kept is None:
            for off in pes.packets:
                buf[off : off + PACKET_SIZE] = NULL_PACKET
            continue
        header_end = 9 + pes.data[8]
        cut = frames[kept][0] - header_end
        trimmed = pes.data[:header_end] + pes.data[frames[kept][0]:]
        write_pes_timestamp(trimmed, 9, round(at) - offset)
        length = (trimmed[4] << 8) | trimmed[5]
        if length:
            length -= cut
            trimmed[4], trimmed[5] = length >> 8, length & 0xFF
        _write_pes(buf, pes.packets, bytes(trimmed))
        return


def _fill_audio_gap(buf: bytearray, pid: int, until: int, offset: int) -> None:
    """Insert silent AAC frames of ``pid`` from ``until`` up to (within one frame) where its first
    audio (shifted by ``offset``) starts, as a PES of new packets before that audio's first."""
    found = _pes_list(buf, pid)
    parsed = _pes_frames(found[0].data) if found else None
    if parsed is None:
        return
    pts, frames = parsed
    first = found[0]
    ticks = frame_ticks(first.data, frames[0][0])
    # whole frames only, ending at or before the new audio: it is not moved, and never overlapped
    count = int(ticks_between(until, pts + offset) // ticks)
    frame = silent_frame(first.data, frames[0][0])
    if frame is None or not 0 < count <= _MAX_SILENT_FRAMES:
        return
    payload = frame * count
    pes = bytearray(b"\x00\x00\x01" + bytes((first.data[3],)))
    pes += (8 + len(payload)).to_bytes(2, "big") + bytes((0x80, 0x80, 5, 0x21, 0, 1, 0, 1)) + payload
    write_pes_timestamp(pes, 9, until - offset)
    size = PACKET_SIZE - 4
    blank = bytes((_SYNC, (pid >> 8) & 0x1F, pid & 0xFF, 0x10)) + b"\xff" * size
    block = bytearray(blank * -(-len(pes) // size))
    _write_pes(block, list(range(0, len(block), PACKET_SIZE)), bytes(pes))
    at = first.packets[0]
    buf[at:at] = block


def _next_counters(data: Buffer) -> dict[int, int]:
    """PID -> the counter its next payload packet would carry after ``data``."""
    following: dict[int, int] = {}
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        if data[off] == _SYNC:
            pid = _pid(data, off)
            if pid != NULL_PID:
                following[pid] = ((data[off + 3] & 0x0F) + 1) & 0x0F
    return following


def _rewrite_anchor(buf: bytearray, join: Join) -> None:
    """Fix ``join`` from the whole anchor segment ``buf`` and rewrite it."""
    base = join.base
    original_next = _next_counters(buf)
    found = _first_frame(buf, video_only=True) or _first_frame(buf, video_only=False)
    join.offset = 0
    if base is not None and found is not None:
        pid, pts, dts = found
        old = base.last.get(pid)
        if old is None:  # the new transcode numbers its video PID differently: join video to video
            old = next((base.last[p] for p in sorted(base.video) if p in base.last), None)
        join.offset = 0 if old is None else join_offset(old, pts, dts)
        for other, (_, last_pts, step) in base.last.items():
            if other != pid and other not in base.video:
                exact = join.exact_ends.get(other)
                _trim_audio(buf, other, last_pts + step if exact is None else exact, join.offset,
                            exact is not None)
                if exact is not None:
                    _fill_audio_gap(buf, other, exact, join.offset)
    if join.offset:
        shift_timestamps(buf, join.offset)
    counters = ContinuityRewriter(base.next_cc if base is not None else {})
    counters.rewrite(buf)
    state = counters.state
    join.cc_delta = {pid: (state[pid] - nxt) & 0x0F for pid, nxt in original_next.items() if pid in state}


class SegmentRewriter:
    """One segment's bytes through a :class:`Join`; ``join`` None passes them unchanged.

    The anchor is held until it arrived whole (it fixes the join); any other segment streams.
    """

    def __init__(self, join: Join | None, *, anchor: bool) -> None:
        self._join = join
        self._anchor = anchor
        #: None until the first byte: then whether the segment is MPEG-TS
        self.is_ts: bool | None = None
        #: the first PES timestamp of the segment as served (orders a generation's segments)
        self.first: int | None = None
        self._carry = b""
        self._head = b""
        self._held = bytearray()

    @property
    def may_grow(self) -> bool:
        """Whether the bytes out may be more than the bytes in (an anchor: silence put in)."""
        return self._anchor and self._join is not None

    def restart(self, *, from_start: bool) -> None:
        """The upstream sends again: from the first byte, or from the last byte passed on."""
        # held-back bytes were never passed on: the upstream sends them again either way
        self._carry = b""
        self._held = bytearray()
        if from_start:
            self._head = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.is_ts is None and chunk:
            self.is_ts = chunk[0] == _SYNC
        join = self._join
        if not self.is_ts or join is None:
            if self.is_ts and self.first is None and len(self._head) < _HEAD_BYTES:
                self._head += chunk
                self.first = first_timestamp(self._head)
            return chunk
        if self._anchor:
            self._held += chunk
            return b""
        data = self._carry + chunk if self._carry else chunk
        whole = len(data) - len(data) % PACKET_SIZE
        self._carry = data[whole:]
        buf = bytearray(data[:whole])
        if join.offset:
            shift_timestamps(buf, join.offset)
        add_continuity(buf, join.cc_delta)
        if self.first is None:
            self.first = first_timestamp(buf)
        return bytes(buf)

    def finish(self) -> bytes:
        """What is left at the end of the segment (a last partial packet passes unchanged)."""
        tail, self._carry = self._carry, b""
        if not self._anchor or self._join is None or not self._held:
            return tail
        held, self._held = self._held, bytearray()
        whole = len(held) - len(held) % PACKET_SIZE
        buf = held[:whole]
        _rewrite_anchor(buf, self._join)
        self.first = first_timestamp(buf)
        return bytes(buf) + bytes(held[whole:])

    def complete(self) -> None:
        """The segment arrived whole: an anchor's join is now fixed for every other segment."""
        if self._anchor and self._join is not None:
            if self._join.offset is None:
                self._join.offset = 0
            self._join.complete = True
