"""The splice of a new transcode's segments onto the old timeline: the shared cache, the continuity
(``proxy/hls/continuity.py``) and the byte rewriting (``proxy/media/rejoin.py``), with the sample
library's real MPEG-TS segments. NextPVR is stood in for by in-memory bodies that a test can hold
back, so the order in which segments arrive is the test's to choose.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Hashable

import pytest
from prometheus_client import CollectorRegistry

from proxy.errors import NextPVRUnreachable, UpstreamTooLarge
from proxy.hls.continuity import Continuity
from proxy.hls.segments import SegmentCache
from proxy.media.library import MediaLibrary
from proxy.media.packets import PACKET_SIZE
from proxy.media.rejoin import Join, SegmentRewriter, audio_ends
from proxy.media.timeline import timeline_end
from proxy.media.timestamps import pes_timestamps, ticks_between
from proxy.metrics import Metrics
from tests.players import FFMPEG, FFPROBE, needs_ffmpeg, run
from tests.test_hls_splice import continuity_breaks

SCOPE = "live.7181.720p"
SECONDS = 2


class MemoryBody:
    """An upstream response from memory; ``gate`` holds its first byte back until set, ``break_at``
    breaks the connection after that many bytes."""

    def __init__(self, data: bytes, gate: asyncio.Event | None = None, *, offset: int = 0,
                 break_at: int | None = None, end_at: int | None = None) -> None:
        self.status = 206 if offset else 200
        self.content_type = "video/mp2t"
        self.content_length = len(data) - offset
        self._data = data[offset:]
        self._gate = gate
        self._break_at = break_at
        self._end_at = end_at

    async def iter_chunks(self, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        if self._gate is not None:
            await self._gate.wait()
        # odd-sized pieces: packets arrive cut anywhere, as from a socket
        step = 1000
        for pos in range(0, len(self._data), step):
            if self._break_at is not None and pos >= self._break_at:
                raise NextPVRUnreachable("the connection to NextPVR broke")
            if self._end_at is not None and pos >= self._end_at:
                return  # a clean end before Content-Length
            yield self._data[pos : pos + step]

    async def close(self) -> None:
        return None


class Upstream:
    """Serves bytes by key and counts the opens."""

    def __init__(self) -> None:
        self.data: dict[Hashable, bytes] = {}
        self.gates: dict[Hashable, asyncio.Event] = {}
        self.opened: list[Hashable] = []
        self.changed = asyncio.Event()
        #: key -> byte after which its first response breaks
        self.breaks: dict[Hashable, int] = {}
        #: key -> byte at which its first response ends early (cleanly)
        self.shorts: dict[Hashable, int] = {}

    def opener(self, key: Hashable):  # type: ignore[no-untyped-def]
        async def open_(offset: int) -> MemoryBody:
            self.opened.append(key)
            self.changed.set()
            return MemoryBody(self.data[key], self.gates.get(key), offset=offset,
                              break_at=self.breaks.pop(key, None), end_at=self.shorts.pop(key, None))
        return open_


@pytest.fixture(scope="module")
def library() -> MediaLibrary:
    return MediaLibrary.load()


def key(generation: int, n: int) -> Hashable:
    return (SCOPE, generation, f"seg{n}")


async def fetch(cache: SegmentCache, continuity: Continuity, upstream: Upstream, generation: int, n: int) -> bytes:
    k = key(generation, n)
    entry = cache.get(k, continuity.opener(cache, SCOPE, generation, k, upstream.opener(k)))
    return b"".join([chunk async for chunk in entry.iter_bytes()])


async def two_generations(library: MediaLibrary, order: list[int], *, hold_anchor: bool = False,
                          breaks: dict[Hashable, int] | None = None, shorts: dict[Hashable, int] | None = None
                          ) -> tuple[list[bytes], list[bytes], Upstream]:
    """Generation 1 lists channel segments 10-12; generation 2 (a new transcode, which starts in
    the recent past as NextPVR's does) lists 11-13 and is fetched in ``order``."""
    source = library.source("testcard")
    cache = SegmentCache(cache_bytes=64 << 20, segment_max_bytes=8 << 20, metrics=Metrics(CollectorRegistry()))
    continuity = Continuity()
    upstream = Upstream()
    for n in range(10, 13):
        upstream.data[key(1, n)] = source.segment(n, SECONDS)
    for n in range(11, 14):
        upstream.data[key(2, n)] = source.segment(n, SECONDS)
    continuity.begin(SCOPE, 1, key(1, 10), upstream.opener(key(1, 10)))
    old = [await fetch(cache, continuity, upstream, 1, n) for n in range(10, 13)]
    if hold_anchor:
        upstream.gates[key(2, 11)] = asyncio.Event()
    upstream.breaks.update(breaks or {})
    upstream.shorts.update(shorts or {})
    continuity.begin(SCOPE, 2, key(2, 11), upstream.opener(key(2, 11)))
    tasks = {n: asyncio.create_task(fetch(cache, continuity, upstream, 2, n)) for n in order}
    if hold_anchor:
        # a later segment asked first starts the anchor's download and waits for it
        async with asyncio.timeout(10):
            while key(2, 11) not in upstream.opened:
                upstream.changed.clear()
                await upstream.changed.wait()
        assert not any(t.done() for t in tasks.values())
        upstream.gates[key(2, 11)].set()
    await asyncio.gather(*tasks.values())
    # every segment of the new generation, from the cache now (the anchor too)
    new = [await fetch(cache, continuity, upstream, 2, n) for n in range(11, 14)]
    assert upstream.opened.count(key(2, 11)) == 1 + (key(2, 11) in {**(breaks or {}), **(shorts or {})})
    await cache.close()
    return old, new, upstream


def decode_times(data: bytes) -> dict[int, list[int]]:
    times: dict[int, list[int]] = {}
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        if data[off + 1] & 0x40:
            pts, dts = pes_timestamps(data, off)
            if pts is not None:
                pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
                times.setdefault(pid, []).append(pts if dts is None else dts)
    return times


async def test_a_generation_continues_the_last_one_whatever_order_its_segments_arrive_in(
        library: MediaLibrary) -> None:
    old, in_order, _ = await two_generations(library, [11, 12, 13])
    _, later_first, upstream = await two_generations(library, [13, 12], hold_anchor=True)
    # the anchor (11) was fetched although nobody asked for it, and every byte is the same
    assert key(2, 11) in upstream.opened
    assert later_first == in_order
    joined = b"".join(old + in_order)
    assert continuity_breaks(joined) == []
    for pid, times in decode_times(joined).items():
        steps = [ticks_between(a, b) for a, b in itertools.pairwise(times)]
        assert min(steps) > 0, pid
    # the new transcode started one segment back in time: its timeline now starts after the old one
    assert in_order[0] != library.source("testcard").segment(11, SECONDS)


async def test_a_download_resumed_after_a_break_gives_the_same_bytes(library: MediaLibrary) -> None:
    _, whole, _ = await two_generations(library, [11, 12, 13])
    # the anchor breaks (it is held until whole: fetched again) and a later one resumes mid-packet
    _, resumed, upstream = await two_generations(library, [11, 12, 13], breaks={key(2, 11): 5000, key(2, 12): 30500})
    assert upstream.opened.count(key(2, 12)) == 2
    assert resumed == whole
    # an anchor that ends early without an error is fetched again, not joined from its second half
    _, refetched, upstream = await two_generations(library, [11, 12, 13], shorts={key(2, 11): 30000})
    assert upstream.opened.count(key(2, 11)) == 2
    assert refetched == whole


async def test_segments_that_are_not_mpeg_ts_pass_unchanged(library: MediaLibrary) -> None:
    cache = SegmentCache(cache_bytes=1 << 20, segment_max_bytes=1 << 20, metrics=Metrics(CollectorRegistry()))
    continuity = Continuity()
    upstream = Upstream()
    upstream.data[key(1, 0)] = library.source("testcard").segment(0, SECONDS)
    fmp4 = b"\x00\x00\x00\x18ftypiso6" + bytes(range(256)) * 40
    upstream.data[key(2, 0)] = upstream.data[key(2, 1)] = fmp4
    continuity.begin(SCOPE, 1, key(1, 0), upstream.opener(key(1, 0)))
    await fetch(cache, continuity, upstream, 1, 0)
    continuity.begin(SCOPE, 2, key(2, 0), upstream.opener(key(2, 0)))
    assert await fetch(cache, continuity, upstream, 2, 1) == fmp4
    assert await fetch(cache, continuity, upstream, 2, 0) == fmp4
    await cache.close()


async def audio_frames(data: bytes) -> list[int]:
    """PTS of every AAC frame ffprobe finds (its parser splits each PES into frames)."""
    assert FFPROBE is not None
    probe = await run(FFPROBE, "-v", "error", "-select_streams", "a", "-show_entries", "packet=pts",
                      "-of", "json", "-", timeout=30, stdin=data)
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr
    return [int(p["pts"]) for p in json.loads(probe.stdout)["packets"]]


@needs_ffmpeg
async def test_audio_that_overlaps_the_old_end_is_cut_to_the_aac_frame(library: MediaLibrary) -> None:
    source = library.source("testcard")
    # segment 7 moved to follow segment 11: its first audio would overlap the old audio's end by
    # 4320 ticks (2.25 AAC frames) unless the overlapping frames are cut
    old, new = source.segment(11, SECONDS), source.segment(7, SECONDS)
    base = timeline_end([old])
    join = Join(base, audio_ends(old, base))
    assert join.exact_ends, "the samples' audio is AAC in ADTS"
    anchor = SegmentRewriter(join, anchor=True)
    out = anchor.feed(new) + anchor.finish()
    anchor.complete()
    assert len(out) == len(new)
    assert continuity_breaks(old + out) == []
    frame = 1920  # 1024 samples at 48 kHz in 90 kHz ticks
    before = await audio_frames(old)
    frames = await audio_frames(old + out)
    steps = [b - a for a, b in itertools.pairwise(frames)]
    assert min(steps) > 0, steps
    # the first new frame plays right after the last old one: neither overlapping nor a gap
    join_step = frames[len(before)] - frames[len(before) - 1]
    assert frame // 2 <= join_step <= frame + frame // 2, join_step


async def test_an_anchor_held_until_whole_is_still_bounded_by_the_segment_limit(library: MediaLibrary) -> None:
    source = library.source("testcard")
    cache = SegmentCache(cache_bytes=1 << 20, segment_max_bytes=100_000, metrics=Metrics(CollectorRegistry()))
    continuity = Continuity()
    upstream = Upstream()
    upstream.data[key(1, 0)] = source.segment(0, SECONDS)
    upstream.data[key(2, 0)] = source.segment(1, SECONDS) * 3  # over the limit
    continuity.begin(SCOPE, 1, key(1, 0), upstream.opener(key(1, 0)))
    await fetch(cache, continuity, upstream, 1, 0)
    continuity.begin(SCOPE, 2, key(2, 0), upstream.opener(key(2, 0)))
    k = key(2, 0)
    body = await continuity.opener(cache, SCOPE, 2, k, upstream.opener(k))(0)
    with pytest.raises(UpstreamTooLarge):
        async for _ in body.iter_chunks():
            pass
    await cache.close()


def joined_late(library: MediaLibrary) -> tuple[bytes, bytes]:
    """Segment 12 moved to follow segment 9: its first audio would start 6720 ticks (3.5 AAC frames
    at 48 kHz) after the old audio ended."""
    source = library.source("testcard")
    return source.segment(9, SECONDS), source.segment(12, SECONDS)


@needs_ffmpeg
async def test_audio_that_starts_after_the_old_end_is_preceded_by_silence(library: MediaLibrary) -> None:
    old, new = joined_late(library)
    base = timeline_end([old])
    join = Join(base, audio_ends(old, base))
    anchor = SegmentRewriter(join, anchor=True)
    out = anchor.feed(new) + anchor.finish()
    anchor.complete()
    assert join.offset is not None
    # the silence is in packets of its own: the anchor grew by them, the counters still follow
    assert len(out) > len(new) and (len(out) - len(new)) % PACKET_SIZE == 0
    assert continuity_breaks(old + out) == []
    frame = 1920  # 1024 samples at 48 kHz in 90 kHz ticks
    before = await audio_frames(old)
    frames = await audio_frames(old + out)
    # the first silent frame starts where the old audio ended
    assert frames[len(before)] - frames[len(before) - 1] == frame
    # A/V sync: the new audio is where its encoder put it (shifted with the video), not moved
    first_new = (await audio_frames(new))[0] + join.offset
    assert first_new in frames
    silent = frames[len(before) : frames.index(first_new)]
    assert len(silent) == 3
    # no hole of a frame or more anywhere, and no overlap
    steps = [b - a for a, b in itertools.pairwise(frames)]
    assert all(0 < step < 2 * frame for step in steps), steps
    # and ffmpeg decodes the joined audio without a word
    assert FFMPEG is not None
    decoded = await run(FFMPEG, "-v", "error", "-i", "-", "-map", "0:a", "-f", "null", "-", timeout=60,
                        stdin=old + out)
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr


async def test_an_anchor_grown_by_silence_goes_through_the_cache_whole(library: MediaLibrary) -> None:
    old, new = joined_late(library)
    cache = SegmentCache(cache_bytes=16 << 20, segment_max_bytes=8 << 20, metrics=Metrics(CollectorRegistry()))
    continuity = Continuity()
    upstream = Upstream()
    upstream.data[key(1, 9)], upstream.data[key(2, 12)] = old, new
    continuity.begin(SCOPE, 1, key(1, 9), upstream.opener(key(1, 9)))
    assert await fetch(cache, continuity, upstream, 1, 9) == old
    continuity.begin(SCOPE, 2, key(2, 12), upstream.opener(key(2, 12)))
    served = await fetch(cache, continuity, upstream, 2, 12)
    # NextPVR's Content-Length is the segment's before the silence: not held against the cache
    base = timeline_end([old])
    anchor = SegmentRewriter(Join(base, audio_ends(old, base)), anchor=True)
    assert served == anchor.feed(new) + anchor.finish()
    assert len(served) > len(new)
    assert upstream.opened.count(key(2, 12)) == 1
    await cache.close()
