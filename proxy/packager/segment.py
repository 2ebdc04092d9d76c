"""One HLS media segment that can be served while it is still being written.

A segment is a list of appended chunks (the packets as they arrived from NextPVR, shared by every
reader, never copied) with known boundaries, so a later layer can cut LL-HLS parts out of it or
write it to disk. Readers walk the chunk list and, at its end, wait on the segment's one event,
which every append (and the end) sets and replaces: a thousand readers of the growing segment cost
one event, not a thousand queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

__all__ = ["Segment", "SegmentGone"]


class SegmentGone(Exception):
    """The segment was evicted (or its session ended) before a reader had all of it."""


class Segment:
    __slots__ = (
        "_changed",
        "chunks",
        "complete",
        "discontinuity",
        "duration",
        "evicted",
        "first_timestamp",
        "name",
        "sequence",
        "size",
        "uri",
        "wall_clock",
    )

    def __init__(self, sequence: int, name: str, *, wall_clock: float, first_timestamp: int | None,
                 discontinuity: bool = False) -> None:
        self.sequence = sequence
        #: file name in the URL, unique per muxing session (``<session prefix>-<sequence>.ts``)
        self.name = name
        #: time.time() at which the proxy received this segment's first byte from NextPVR
        self.wall_clock = wall_clock
        #: 90 kHz DTS (or PTS) of the first access unit, for the real duration
        self.first_timestamp = first_timestamp
        self.discontinuity = discontinuity
        #: EXTINF in seconds, known once the segment is complete
        self.duration: float | None = None
        #: the signed URI every viewer gets, set by the muxer when the segment is listed
        self.uri = ""
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.evicted = False
        self._changed = asyncio.Event()

    def append(self, data: bytes) -> None:
        if self.complete:
            raise RuntimeError("append to a complete segment")
        if data:
            self.chunks.append(data)
            self.size += len(data)
            self._wake()

    def replace(self, data: bytes) -> None:
        """Swap the bytes for a same-length rewrite (packets nulled out at a break)."""
        if len(data) != self.size or self.complete:
            raise ValueError("a segment's bytes can only be rewritten in place before it is complete")
        self.chunks = [data]

    def finish(self, duration: float) -> None:
        self.duration = duration
        self.complete = True
        self._wake()

    def evict(self) -> None:
        """Forget the bytes; readers still waiting for more get :class:`SegmentGone`."""
        self.evicted = True
        self.chunks = []
        self._wake()

    def data(self) -> bytes:
        return b"".join(self.chunks)

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def read(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, waiting for the ones not yet appended."""
        index = 0
        while True:
            if self.evicted:
                raise SegmentGone(self.name)
            chunks = self.chunks
            if index < len(chunks):
                # a snapshot: appends made while the consumer writes are picked up next round
                end = len(chunks)
                for i in range(index, end):
                    yield chunks[i]
                index = end
                continue
            if self.complete:
                return
            await self._changed.wait()
