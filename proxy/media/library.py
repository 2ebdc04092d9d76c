"""The committed H.264 + AAC sample channels, served as an endless, seamlessly looped MPEG-TS.

Each sample is one loop (8 s, a whole number of video and AAC frames, one IDR per second) made by
``scripts/make_samples.sh``. At load every loop is cut into GOPs once; each GOP is stored as
PAT + PMT + the packets from its keyframe to the next, with continuity counters renumbered so the
loop is continuous with itself. A segment of the endless stream is then only a concatenation of
GOPs, each with its timestamps moved on by whole loops and its counters moved on by the number of
packets each PID had in those loops: no parsing on the request path.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cachetools import LRUCache

from proxy.media.analyzer import StreamAnalyzer
from proxy.media.packets import PACKET_SIZE, PAT_PID, SYNC, packet_pid
from proxy.media.timestamps import (
    CLOCK_HZ,
    ContinuityRewriter,
    TimestampField,
    add_continuity,
    pes_timestamps,
    shift_timestamps,
    timestamp_fields,
)

__all__ = ["DEFAULT_CACHE_BYTES", "MediaLibrary", "MediaSource", "SampleError"]

log = logging.getLogger("proxy.media")

#: per-source bound on cached segment bytes
DEFAULT_CACHE_BYTES: Final = 8 * 1024 * 1024
_INDEX: Final = "samples.json"


class SampleError(ValueError):
    """A sample file or the sample index is unusable (wrong layout, not loopable)."""


@dataclass(frozen=True, slots=True)
class _Gop:
    #: PAT + PMT + keyframe ... up to the next keyframe, as in loop 0
    data: bytes
    fields: tuple[TimestampField, ...]


class MediaSource:
    """One sample channel as an endless stream, addressable by segment index."""

    __slots__ = (
        "_cache",
        "_cache_limit",
        "_gop_ticks",
        "_gops",
        "_loop_packets",
        "_loop_ticks",
        "description",
        "gop_seconds",
        "loop_seconds",
        "name",
    )

    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        loop_seconds: float,
        gop_seconds: float,
        description: str = "",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.name = name
        self.description = description
        self._loop_ticks = round(loop_seconds * CLOCK_HZ)
        self._gop_ticks = round(gop_seconds * CLOCK_HZ)
        if self._gop_ticks <= 0 or self._loop_ticks % self._gop_ticks:
            raise SampleError(f"{name}: a loop of {loop_seconds} s is not a whole number of GOPs")
        self._gops, self._loop_packets = _cut_loop(name, data, self._loop_ticks, self._gop_ticks)
        #: length of one pass through the sample (8.0 for the committed ones)
        self.loop_seconds: float = self._loop_ticks / CLOCK_HZ
        self.gop_seconds: float = self._gop_ticks / CLOCK_HZ
        self._cache_limit = cache_bytes
        self._cache: LRUCache[tuple[int, int], bytes] = LRUCache(maxsize=max(cache_bytes, 1), getsizeof=len)

    @property
    def loop_bytes(self) -> int:
        return sum(len(gop.data) for gop in self._gops)

    @property
    def bitrate(self) -> int:
        """Average bits per second of the looped stream, PSI included."""
        return round(self.loop_bytes * 8 / self.loop_seconds)

    @property
    def cached_bytes(self) -> int:
        return int(self._cache.currsize)

    def segment_duration(self, seconds: int) -> float:
        """Exact duration of ``segment(i, seconds)``: what its ``#EXTINF`` should say."""
        return self._gops_per_segment(seconds) * self._gop_ticks / CLOCK_HZ

    def segment(self, index: int, seconds: int) -> bytes:
        """Segment ``index`` of the endless stream cut into pieces of ``seconds`` (whole GOPs).

        Every segment starts with PAT + PMT + a keyframe. Concatenating consecutive segments gives a
        stream with continuous PTS/DTS/PCR (wrapping at 33 bits) and continuity counters.
        """
        gops = self._gops_per_segment(seconds)
        if index < 0:
            raise ValueError("segment index must be >= 0")
        key = (index, gops)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        first = index * gops
        data = b"".join(self._gop(number) for number in range(first, first + gops))
        if len(data) <= self._cache_limit // 4:
            self._cache[key] = data
        return data

    def _gops_per_segment(self, seconds: int) -> int:
        if seconds < 1:
            raise ValueError("segment length must be >= 1 s")
        gops, rest = divmod(seconds * CLOCK_HZ, self._gop_ticks)
        if rest:
            raise ValueError(f"{seconds} s is not a whole number of {self.gop_seconds} s GOPs")
        return gops

    def _gop(self, number: int) -> bytes:
        loop, position = divmod(number, len(self._gops))
        gop = self._gops[position]
        if not loop:
            return gop.data
        buf = bytearray(gop.data)
        shift_timestamps(buf, loop * self._loop_ticks, gop.fields)
        add_continuity(buf, {pid: loop * count for pid, count in self._loop_packets.items()})
        return bytes(buf)


class MediaLibrary:
    """The sample channels, by name, in the order of ``samples.json``."""

    __slots__ = ("_sources", "names")

    def __init__(self, sources: list[MediaSource]) -> None:
        if not sources:
            raise SampleError("no samples")
        self._sources = {source.name: source for source in sources}
        if len(self._sources) != len(sources):
            raise SampleError("duplicate sample names")
        self.names: tuple[str, ...] = tuple(source.name for source in sources)

    @classmethod
    def load(cls, directory: Path | None = None, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> MediaLibrary:
        """Read ``samples.json`` and every sample it lists from ``directory`` (default: the packaged ones)."""
        root = directory if directory is not None else Path(__file__).with_name("samples")
        try:
            index: dict[str, Any] = json.loads((root / _INDEX).read_text(encoding="utf-8"))
            loop_seconds = float(index["loop_seconds"])
            gop_seconds = float(index["gop_seconds"])
            entries: list[dict[str, Any]] = list(index["samples"])
            sources = [
                MediaSource(
                    str(entry["name"]),
                    (root / str(entry["file"])).read_bytes(),
                    loop_seconds=float(entry.get("loop_seconds", loop_seconds)),
                    gop_seconds=float(entry.get("gop_seconds", gop_seconds)),
                    description=str(entry.get("description", "")),
                    cache_bytes=cache_bytes,
                )
                for entry in entries
            ]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise SampleError(f"cannot load the media samples from {root.name}/: {exc}") from exc
        log.debug("loaded %d media samples from %s", len(sources), root)
        return cls(sources)

    def source(self, name: str) -> MediaSource:
        try:
            return self._sources[name]
        except KeyError:
            raise KeyError(f"no media sample named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __len__(self) -> int:
        return len(self.names)


def _cut_loop(
    name: str, data: bytes, loop_ticks: int, gop_ticks: int
) -> tuple[tuple[_Gop, ...], dict[int, int]]:
    """Split one loop into self-contained GOPs; also return the payload packets per PID in a loop."""
    if not data or len(data) % PACKET_SIZE or data[::PACKET_SIZE].strip(bytes((SYNC,))):
        raise SampleError(f"{name}: not an aligned MPEG-TS file")
    analyzer = StreamAnalyzer()
    keyframes = analyzer.scan(data)
    header, video_pid = analyzer.header, analyzer.video_pid
    if not header or video_pid is None or not analyzer.audio_pids:
        raise SampleError(f"{name}: no PAT/PMT with a video and an audio stream")
    expected = loop_ticks // gop_ticks
    if len(keyframes) != expected:
        raise SampleError(f"{name}: {len(keyframes)} keyframes, expected {expected} (one per GOP)")
    _check_video_timing(name, data, video_pid, keyframes, loop_ticks, gop_ticks)
    _check_cuts(name, data, keyframes, analyzer.audio_pids)

    psi = {PAT_PID, analyzer.pmt_pid}

    def body(start: int, end: int) -> bytes:
        # The file's own PAT/PMT repeats are dropped: each GOP gets exactly one copy in front.
        return b"".join(
            data[off : off + PACKET_SIZE]
            for off in range(start, end, PACKET_SIZE)
            if packet_pid(data, off) not in psi
        )

    bounds = [*keyframes, len(data)]
    bodies = [body(bounds[i], bounds[i + 1]) for i in range(len(keyframes))]
    # Whatever precedes the first keyframe (SDT, early audio) belongs, in an endless stream, to the
    # tail of the previous loop: append it to the last GOP, one loop later.
    lead = bytearray(body(0, keyframes[0]))
    shift_timestamps(lead, loop_ticks)
    bodies[-1] += lead

    loop = bytearray(b"".join(header + b for b in bodies))
    counters = ContinuityRewriter()
    counters.rewrite(loop)
    gops: list[_Gop] = []
    pos = 0
    for b in bodies:
        size = len(header) + len(b)
        chunk = bytes(loop[pos : pos + size])
        gops.append(_Gop(chunk, tuple(timestamp_fields(chunk))))
        pos += size
    return tuple(gops), counters.state


def _check_video_timing(
    name: str, data: bytes, video_pid: int, keyframes: list[int], loop_ticks: int, gop_ticks: int
) -> None:
    """The loop seam must look like any other frame boundary, and keyframes exactly one GOP apart."""
    dts: list[int] = []
    for off in range(0, len(data), PACKET_SIZE):
        if packet_pid(data, off) == video_pid:
            pts, decode = pes_timestamps(data, off)
            if pts is not None:
                dts.append(decode if decode is not None else pts)
    steps = {b - a for a, b in itertools.pairwise(dts)}
    if len(steps) != 1 or dts[-1] + steps.pop() != dts[0] + loop_ticks:
        raise SampleError(f"{name}: video frames are not evenly spaced over exactly one loop")
    starts = []
    for off in keyframes:
        pts, decode = pes_timestamps(data, off)
        if pts is None:
            raise SampleError(f"{name}: keyframe packet without PES timestamps")
        starts.append(decode if decode is not None else pts)
    if any(b - a != gop_ticks for a, b in itertools.pairwise(starts)):
        raise SampleError(f"{name}: keyframes are not one GOP apart")


def _check_cuts(name: str, data: bytes, keyframes: list[int], pids: tuple[int, ...]) -> None:
    """No audio PES may straddle a keyframe, or a segment would start with half an audio frame."""
    for cut in keyframes:
        waiting = set(pids)
        for off in range(cut, len(data), PACKET_SIZE):
            pid = packet_pid(data, off)
            if pid in waiting:
                if not data[off + 1] & 0x40:
                    raise SampleError(f"{name}: an audio PES straddles the keyframe at byte {cut}")
                waiting.discard(pid)
                if not waiting:
                    break
