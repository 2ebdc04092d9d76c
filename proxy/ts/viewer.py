"""One live-TS viewer's bounded queue (the fan-out in ``fanout.py`` pushes, the handler pulls)."""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable

__all__ = ["EndReason", "Viewer"]

#: most bytes handed to one write() call. Only a viewer that lags has more than one chunk queued, and
#: what its socket cannot take stays in its transport's buffer: 200 slow viewers (1 Mbit/s, MSS 1448)
#: held ~60 MB more at 256 KiB than at 32 KiB (benchmarks/README.md, "slow viewers")
_WRITE_BATCH = 32 * 1024


class EndReason(enum.Enum):
    UPSTREAM_ENDED = "upstream ended"
    UPSTREAM_IDLE = "upstream sent nothing"
    UPSTREAM_ERROR = "upstream failed"
    SLOW = "viewer too slow"
    LEFT = "viewer left"
    SHUTDOWN = "shutdown"


#: endings after which a viewer still receives what is already queued for it
_DRAIN = frozenset({EndReason.UPSTREAM_ENDED, EndReason.UPSTREAM_IDLE, EndReason.UPSTREAM_ERROR})


class Viewer:
    """One client's queue. ``next()`` hands out bytes; ``push()`` never blocks."""

    def __init__(self, limit: int, on_overflow: Callable[[Viewer], None]) -> None:
        self.limit = limit
        #: set by the handler: drops the client connection (a stalled writer is stuck in drain)
        self.abort: Callable[[], None] | None = None
        self.queued = 0
        self.peak = 0
        self.sent = 0
        self.started = False
        self.joined_at = time.monotonic()
        self.ended: EndReason | None = None
        self._queue: deque[bytes] = deque()
        self._event = asyncio.Event()
        self._on_overflow = on_overflow

    def push(self, data: bytes) -> None:
        if self.ended is not None or not data:
            return
        # an empty queue takes any single chunk (upstream chunks are at most 64 KiB): a viewer
        # is slow when data piles up, not when NextPVR sends a burst
        if self.queued and self.queued + len(data) > self.limit:
            self.end(EndReason.SLOW)
            self._on_overflow(self)
            if self.abort is not None:
                self.abort()
            return
        self._queue.append(data)
        self.queued += len(data)
        self.peak = max(self.peak, self.queued)
        self._event.set()

    def end(self, reason: EndReason) -> None:
        """Stop this viewer. After a clean upstream end it still drains what it has queued."""
        if self.ended is None:
            self.ended = reason
            if reason not in _DRAIN:
                self._queue.clear()
                self.queued = 0
            self._event.set()

    async def next(self) -> bytes | None:
        """The next bytes to send, or None when this viewer's stream is over."""
        while not self._queue:
            if self.ended is not None:
                return None
            self._event.clear()
            await self._event.wait()
        if self.ended is not None and self.ended not in _DRAIN:
            return None
        parts: list[bytes] = []
        size = 0
        while self._queue and size < _WRITE_BATCH:
            part = self._queue.popleft()
            parts.append(part)
            size += len(part)
        self.queued -= size
        self.sent += size
        return parts[0] if len(parts) == 1 else b"".join(parts)
