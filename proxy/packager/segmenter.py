"""Cutting a live MPEG-TS into HLS segments: at keyframes, each starting with PAT + PMT.

Fed the aligned packets of one channel with the :class:`~proxy.media.analyzer.StreamAnalyzer`'s
findings (the fan-out already runs it on every chunk, so the segmenter parses only the packets it
cuts at). A segment starts at a video random-access point; the next cut is the first keyframe at
or after ``target`` seconds (by the 90 kHz decode timestamps), so a stream with long GOPs gets long
segments and says so in its EXTINF. The very first segment of a session is cut at the second
keyframe, whatever the target: the first playlist then costs one GOP, not a whole target.

Audio-only (radio) channels are cut at the first audio PES start at or after the target. The
bytes are passed on exactly as they came (continuity counters and timestamps untouched); only a
copy of the latest PAT + PMT is put in front of a segment that does not already start with them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

from proxy.media.analyzer import StreamAnalyzer
from proxy.media.packets import PACKET_SIZE, PAT_PID, packet_pid
from proxy.media.timestamps import CLOCK_HZ, pes_timestamps, ticks_between
from proxy.packager.segment import Segment

__all__ = ["Segmenter", "media_duration", "ticks_between"]

#: a cut due at exactly the target may be a few ticks early from rounding in the source
_EARLY: Final = 0.005
#: a cut this far (in target durations, and at least seconds) after the segment start is a timestamp jump
_JUMP_TARGETS: Final = 10
_JUMP_SECONDS: Final = 60.0


def _decode_time(data: bytes, offset: int) -> int | None:
    pts, dts = pes_timestamps(data, offset)
    return dts if dts is not None else pts


def media_duration(data: bytes, pid: int) -> float:
    """Seconds of ``pid`` in ``data``: from its first decode time to one frame after its last."""
    times: list[int] = []
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        if data[off + 1] & 0x40 and packet_pid(data, off) == pid:
            ts = _decode_time(data, off)
            if ts is not None:
                times.append(ts)
    if len(times) < 2:
        return 0.0
    steps = [ticks_between(a, b) for a, b in itertools.pairwise(times)]
    step = min(s for s in steps if s > 0) if any(s > 0 for s in steps) else 0
    return max(0, ticks_between(times[0], times[-1]) + step) / CLOCK_HZ


class Segmenter:
    """Turns packets into :class:`Segment` objects made by ``new_segment`` and handed to ``done``."""

    def __init__(self, *, target: float, max_bytes: int,
                 new_segment: Callable[[float, int | None, bool], Segment],
                 done: Callable[[Segment], None]) -> None:
        self._target = target
        self._max_bytes = max_bytes
        self._new_segment = new_segment
        self._done = done
        self.current: Segment | None = None
        #: why the stream cannot be packaged (no PMT stream to cut on, a GOP beyond the byte bound)
        self.failed: str | None = None
        #: PID the cuts are made on, once the PMT is known
        self.cut_pid: int | None = None
        self._first = True

    def feed(self, packets: bytes, keyframes: list[int], analyzer: StreamAnalyzer, wall: float) -> None:
        if self.failed is not None or analyzer.program is None or not packets:
            return
        if analyzer.video_pid is not None:
            self.cut_pid = analyzer.video_pid
            cuts = self._video_cuts(packets, keyframes, analyzer)
        elif analyzer.audio_pids:
            self.cut_pid = analyzer.audio_pids[0]
            cuts = self._audio_cuts(packets, analyzer.audio_pids[0])
        else:
            self.failed = "the channel's PMT lists no video or audio stream"
            return
        pos = 0
        for cut, ts in cuts:
            current = self.current
            jump = False
            if current is not None:
                first = ts if current.first_timestamp is None else current.first_timestamp
                elapsed = ticks_between(first, ts) / CLOCK_HZ
                # timestamps that go back or leap ahead (a broadcaster's splice, a looped file):
                # cut there and mark the discontinuity; the duration comes from the segment's own bytes
                jump = elapsed < 0 or elapsed > max(_JUMP_TARGETS * self._target, _JUMP_SECONDS)
                if not jump and (elapsed == 0 or (not self._first and elapsed < self._target - _EARLY)):
                    continue
                self._append(current, packets[pos:cut])
                if jump:
                    assert self.cut_pid is not None
                    elapsed = media_duration(current.data(), self.cut_pid)
                self._close(current, elapsed)
            self._open(packets, cut, ts, analyzer, wall, jump)
            pos = cut
        if self.current is not None and pos < len(packets):
            self._append(self.current, packets[pos:])

    def finish(self) -> Segment | None:
        """End of this connection: complete the growing segment with its measured duration."""
        current, self.current = self.current, None
        if current is not None and self.cut_pid is not None and self.failed is None:
            self._close(current, media_duration(current.data(), self.cut_pid))
            return current
        return None

    # -- cuts

    def _video_cuts(self, packets: bytes, keyframes: list[int], analyzer: StreamAnalyzer) -> list[tuple[int, int]]:
        cuts: list[tuple[int, int]] = []
        psi = (PAT_PID, analyzer.pmt_pid)
        for kf in keyframes:
            ts = _decode_time(packets, kf)
            if ts is None:
                continue
            cut = kf
            # the PAT + PMT a broadcaster puts just before a keyframe belong to the new segment
            while cut >= PACKET_SIZE and packet_pid(packets, cut - PACKET_SIZE) in psi:
                cut -= PACKET_SIZE
            cuts.append((cut, ts))
        return cuts

    def _audio_cuts(self, packets: bytes, pid: int) -> list[tuple[int, int]]:
        current = self.current
        start = current.first_timestamp if current is not None else None
        cuts: list[tuple[int, int]] = []
        for off in range(0, len(packets), PACKET_SIZE):
            if not packets[off + 1] & 0x40 or packet_pid(packets, off) != pid:
                continue
            ts = _decode_time(packets, off)
            if ts is None:
                continue
            if start is None or ticks_between(start, ts) / CLOCK_HZ >= self._target - _EARLY:
                cuts.append((off, ts))
                start = ts
        return cuts

    # -- segments

    def _open(self, packets: bytes, cut: int, ts: int, analyzer: StreamAnalyzer, wall: float,
              discontinuity: bool = False) -> None:
        segment = self._new_segment(wall, ts, discontinuity)
        if packet_pid(packets, cut) != PAT_PID:
            segment.append(analyzer.header)
        self.current = segment

    def _close(self, segment: Segment, duration: float) -> None:
        self._first = False
        self.current = None
        segment.finish(duration)
        self._done(segment)

    def _append(self, segment: Segment, data: bytes) -> None:
        if segment.size + len(data) > self._max_bytes:
            self.failed = (f"a segment grew beyond hls.segment_max_bytes ({self._max_bytes} bytes) "
                           "without a keyframe to cut at")
            return
        segment.append(data)
