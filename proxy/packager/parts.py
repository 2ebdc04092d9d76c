"""LL-HLS partial segments: byte ranges of the growing segment, cut at frame starts.

A part is a byte range ``[start, end)`` of its :class:`~proxy.packager.segment.Segment` (parts are
not copied: a part request reads that range of the segment's shared chunks). Cuts are made at a
PES start of the segment's cut PID (a video access unit; audio-only channels: an audio PES), as
late as possible without the part exceeding the part target: a part is cut when one more frame
(the last decode-time step seen) would push it past ``target``. With 25 or 30 fps video and the
default 0.33 s target that gives 0.32 s / 0.30 s parts, above the 85 % of PART-TARGET that iOS
wants; the last part of a segment ends at the segment's cut and may be shorter (RFC 8216bis
4.4.4.9 allows it). A part is INDEPENDENT when it starts with a keyframe: every first part, and a
mid-segment part whose first frame's decode time is one the fan-out's analyzer flagged as a
keyframe.

The cutter scans only the chunks appended since its last call (one pass over each packet's
header), so the work per upstream read stays proportional to that read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from proxy.media.packets import PACKET_SIZE, packet_pid
from proxy.media.timestamps import CLOCK_HZ, pes_timestamps
from proxy.packager.segment import Segment
from proxy.packager.segmenter import ticks_between

__all__ = ["Part", "PartCutter"]

#: keyframe decode times remembered for the INDEPENDENT test (a few GOPs' worth)
_KEYFRAMES_KEPT = 64
#: a frame step above this (seconds) is a timestamp jump, not a frame rate
_MAX_STEP = 1.0


@dataclass(slots=True)
class Part:
    sequence: int
    index: int
    start: int
    end: int
    duration: float
    independent: bool
    #: the signed URI every viewer gets (set by the muxer)
    uri: str = ""


class _Open:
    """The part being written: where it starts and what was scanned so far."""

    __slots__ = ("first_ts", "independent", "last_ts", "scanned", "start")

    def __init__(self, start: int, first_ts: int | None, independent: bool) -> None:
        self.start = start
        self.first_ts = first_ts
        self.last_ts = first_ts
        self.independent = independent
        #: the byte offset of the segment scanned so far
        self.scanned = start


class PartCutter:
    """Cuts the muxer's segments into parts of at most ``target`` seconds (``parts[sequence]``)."""

    def __init__(self, target: float) -> None:
        self.target = target
        self._target_ticks = round(target * CLOCK_HZ)
        self.parts: dict[int, list[Part]] = {}
        self._open: dict[int, _Open] = {}
        self._keyframes: deque[int] = deque(maxlen=_KEYFRAMES_KEPT)
        self._step = 0

    def keyframe(self, decode_time: int) -> None:
        """A keyframe the analyzer found (its DTS/PTS), for the INDEPENDENT flag of a later cut."""
        self._keyframes.append(decode_time)

    def scan(self, segment: Segment, pid: int | None) -> list[Part]:
        """Cut what ``segment`` grew by; the parts completed by this call."""
        if pid is None or segment.evicted:
            return []
        state = self._open.get(segment.sequence)
        if state is None:
            state = _Open(0, segment.first_timestamp, True)
            self._open[segment.sequence] = state
            self.parts.setdefault(segment.sequence, [])
        done: list[Part] = []
        # walk by byte offset, not chunk index: finish() joins the chunks and a break rewrites them
        base = 0
        for chunk in segment.chunks:
            top = base + len(chunk)
            if top > state.scanned:
                off = state.scanned - base
                for pos in range(off - off % PACKET_SIZE, len(chunk) - PACKET_SIZE + 1, PACKET_SIZE):
                    if not chunk[pos + 1] & 0x40 or packet_pid(chunk, pos) != pid:
                        continue
                    pts, dts = pes_timestamps(chunk, pos)
                    ts = dts if dts is not None else pts
                    if ts is not None:
                        self._frame(segment, state, base + pos, ts, done)
                state.scanned = top
            base = top
        return done

    def _frame(self, segment: Segment, state: _Open, offset: int, ts: int, done: list[Part]) -> None:
        if state.first_ts is None:
            state.first_ts = state.last_ts = ts
            return
        if state.last_ts is not None:
            step = ticks_between(state.last_ts, ts)
            if 0 < step < _MAX_STEP * CLOCK_HZ:
                self._step = step
        state.last_ts = ts
        elapsed = ticks_between(state.first_ts, ts)
        if offset <= state.start or elapsed <= 0:
            return
        # cut now if one more frame would take the part past the target
        if elapsed + self._step > self._target_ticks:
            parts = self.parts[segment.sequence]
            part = Part(segment.sequence, len(parts), state.start, offset, elapsed / CLOCK_HZ, state.independent)
            parts.append(part)
            done.append(part)
            state.start = offset
            state.first_ts = ts
            state.independent = ts in self._keyframes

    def finish(self, segment: Segment, pid: int | None) -> Part | None:
        """The segment is complete: its last part ends at its end (with what its EXTINF leaves)."""
        self.scan(segment, pid)
        state = self._open.pop(segment.sequence, None)
        parts = self.parts.setdefault(segment.sequence, [])
        if state is None or state.start >= segment.size:
            return None
        used = sum(p.duration for p in parts)
        duration = max(0.001, (segment.duration or 0.0) - used)
        part = Part(segment.sequence, len(parts), state.start, segment.size, duration, state.independent)
        parts.append(part)
        return part

    def forget_before(self, sequence: int) -> None:
        """Drop the records of segments older than ``sequence`` (they left the store)."""
        for seq in [s for s in self.parts if s < sequence]:
            del self.parts[seq]
            self._open.pop(seq, None)

    def completed(self, sequence: int) -> int:
        """Parts of segment ``sequence`` complete so far."""
        return len(self.parts.get(sequence, ()))

    def part(self, sequence: int, index: int) -> Part | None:
        parts = self.parts.get(sequence)
        return parts[index] if parts is not None and 0 <= index < len(parts) else None

    def duration_so_far(self, sequence: int) -> float:
        return sum(p.duration for p in self.parts.get(sequence, ()))


def part_offsets_valid(parts: list[Part], size: int) -> bool:
    """The parts tile ``[0, size)`` without gaps or overlaps (for tests and assertions)."""
    pos = 0
    for part in parts:
        if part.start != pos or part.end <= part.start:
            return False
        pos = part.end
    return pos == size
