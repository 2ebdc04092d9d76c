"""Media bytes of the emulated channels: a wall-clock position per channel and a segment cache.

Every channel is an endless looped sample from :mod:`proxy.media.library`, cut into segments of
``segment_seconds``. A channel's segment ``k`` starts at ``epoch + k * duration`` on the monotonic
clock, so a stream opened later starts later in the programme, as a real broadcast does.
Recordings and timeshift buffers are :class:`SegmentedFile` views over the same segments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

from proxy.emulator.data import Channel
from proxy.media.library import MediaLibrary

__all__ = ["Feeds", "SegmentedFile"]

#: channel clocks start this far in the past, so the first streams do not begin at timestamp zero
CLOCK_HEAD_START = 3600.0


class Feeds:
    """Segment ``k`` of a channel, its exact duration and when it airs; loads media on first use."""

    def __init__(self, segment_seconds: int, cache_bytes: int, media: MediaLibrary | None = None) -> None:
        self.segment_seconds = segment_seconds
        self._media = media
        self._cache_bytes = cache_bytes
        self.epoch = time.monotonic() - CLOCK_HEAD_START

    @property
    def media(self) -> MediaLibrary:
        if self._media is None:
            self._media = MediaLibrary.load(cache_bytes=self._cache_bytes)
        return self._media

    def source_name(self, channel: Channel) -> str:
        names = self.media.names
        return names[channel.media % len(names)]

    def duration(self, channel: Channel) -> float:
        """Exact EXTINF value of one segment of this channel."""
        return self.media.source(self.source_name(channel)).segment_duration(self.segment_seconds)

    def index_at(self, channel: Channel, when: float | None = None) -> int:
        """The segment airing at monotonic time ``when`` (now by default)."""
        now = time.monotonic() if when is None else when
        return int((now - self.epoch) // self.duration(channel))

    def airs_at(self, channel: Channel, index: int) -> float:
        return self.epoch + index * self.duration(channel)

    def segment(self, channel: Channel, index: int) -> bytes:
        """Cached by the media library (bounded per source by ``segment_cache_bytes``)."""
        return self.media.source(self.source_name(channel)).segment(index, self.segment_seconds)

    def segments_for(self, seconds: float) -> int:
        """How many segments hold ``seconds`` of media (at least one)."""
        return max(1, math.ceil(seconds / self.segment_seconds - 1e-9))


class SegmentedFile:
    """A byte file made of consecutive segments of one channel (a recording or timeshift buffer).

    Only offsets are kept; bytes are made again (or taken from the library's cache) when read.
    """

    def __init__(self, feeds: Feeds, channel: Channel, first_index: int) -> None:
        self.feeds = feeds
        self.channel = channel
        self.first_index = first_index
        self._offsets = [0]

    def segment(self, i: int) -> bytes:
        return self.feeds.segment(self.channel, self.first_index + i)

    def size(self, segments: int) -> int:
        """Bytes in the first ``segments`` segments."""
        while len(self._offsets) <= segments:
            i = len(self._offsets) - 1
            self._offsets.append(self._offsets[-1] + len(self.segment(i)))
        return self._offsets[segments]

    def read(self, start: int, end: int, segments: int, chunk: int) -> Iterator[memoryview]:
        """Bytes ``[start, end)`` of the first ``segments`` segments, at most ``chunk`` at a time."""
        end = min(end, self.size(segments))
        pos = start
        i = self._segment_at(pos, segments)
        while pos < end and i < segments:
            seg_start = self._offsets[i]
            data = memoryview(self.segment(i))
            stop = min(len(data), end - seg_start)
            offset = pos - seg_start
            while offset < stop:
                piece = data[offset : min(stop, offset + chunk)]
                offset += len(piece)
                yield piece
            pos = seg_start + stop
            i += 1

    def _segment_at(self, pos: int, segments: int) -> int:
        self.size(segments)
        lo, hi = 0, segments
        while lo < hi:
            mid = (lo + hi) // 2
            if self._offsets[mid + 1] <= pos:
                lo = mid + 1
            else:
                hi = mid
        return lo
