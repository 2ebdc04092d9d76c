"""One HLS media segment that can be served while it is still being written.

A segment is a list of appended chunks (the packets as they arrived from NextPVR, shared by every
reader, never copied) with their boundaries kept in ``boundaries``, so a later layer can cut LL-HLS
parts out of it or write it to disk. When it is complete the chunks are joined once into one
``bytes``: serving 200 viewers from one buffer in 256 KiB writes ran ~1.6x faster than writing
each upstream chunk (benchmarks/README.md, "remux"). Readers follow a byte position, not a chunk
index, so the join (and a same-length rewrite) never disturbs one that is half-way through. At
the end of the bytes so far they wait on the segment's one event, which every append (and the
end) sets and replaces: a thousand readers of the growing segment cost one event, not a
thousand queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

__all__ = ["Segment", "SegmentGone"]

#: the most a reader is handed at once (what one response write takes)
READ_PIECE: Final = 256 * 1024


class SegmentGone(Exception):
    """The segment was evicted (or its session ended) before a reader had all of it."""


class Segment:
    __slots__ = (
        "_changed",
        "boundaries",
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
        #: the end offset of every appended chunk (the boundaries of the upstream reads)
        self.boundaries: list[int] = []
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
            self.boundaries.append(self.size)
            self._wake()

    def replace(self, data: bytes) -> None:
        """Swap the bytes for a same-length rewrite (packets nulled out at a break)."""
        if len(data) != self.size or self.complete:
            raise ValueError("a segment's bytes can only be rewritten in place before it is complete")
        self.chunks = [data]

    def finish(self, duration: float) -> None:
        self.duration = duration
        self.complete = True
        if len(self.chunks) > 1:
            self.chunks = [b"".join(self.chunks)]
        self._wake()

    def evict(self) -> None:
        """Forget the bytes; readers still waiting for more get :class:`SegmentGone`."""
        self.evicted = True
        self.chunks = []
        self._wake()

    def data(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[memoryview]:
        """Every byte from ``start`` (up to ``end``: an LL-HLS part), in pieces of at most
        :data:`READ_PIECE`, waiting for the ones not yet appended."""
        pos = start
        while True:
            if self.evicted:
                raise SegmentGone(self.name)
            if end is not None and pos >= end:
                return
            if pos < self.size:
                base = 0
                for chunk in self.chunks:
                    top = base + len(chunk)
                    if pos < top:
                        stop = len(chunk) if end is None else min(len(chunk), end - base)
                        view = memoryview(chunk)[pos - base : stop]
                        for off in range(0, len(view), READ_PIECE):
                            piece = view[off : off + READ_PIECE]
                            pos += len(piece)
                            yield piece
                            if self.evicted:
                                raise SegmentGone(self.name)
                        break
                    base = top
                continue
            if self.complete:
                return
            await self._changed.wait()
