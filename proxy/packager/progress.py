"""One wake-up for everyone waiting on a channel's live edge (LL-HLS blocking reloads, preload hints).

Every blocked request awaits the same :class:`asyncio.Event`, which the muxer sets and replaces
whenever a part or a segment completes (or the session ends): a thousand blocked playlist
requests cost one event and a thousand suspended handlers, not a thousand queues, tasks or
timers. Deadlines are checked when a waiter wakes; so that a stalled stream still releases its
waiters on time, the channel arms a single timer while anyone waits, which wakes them all every
:data:`TICK` seconds (so a deadline is kept within that much).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

__all__ = ["TICK", "Progress"]

#: how often waiters re-check their deadline when nothing completes
TICK: Final = 0.25


class Progress:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._tick: asyncio.TimerHandle | None = None
        #: requests waiting now
        self.waiting = 0
        #: time.monotonic() of the last wake caused by the stream (not by the tick)
        self.woken_at = 0.0
        #: the session is over: nothing will complete any more, every waiter leaves
        self.closed = False

    def wake(self) -> None:
        """Something completed: every waiter re-checks its condition."""
        self.woken_at = time.monotonic()
        self._set()

    def _set(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def until(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``ready()`` (True) or ``time.monotonic()`` passes ``deadline`` or the session
        closes (False)."""
        if ready():
            return True
        if self.closed:
            return False
        self.waiting += 1
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(TICK, self._on_tick)
        try:
            while True:
                await self._event.wait()
                if ready():
                    return True
                if self.closed or time.monotonic() >= deadline:
                    return False
        finally:
            self.waiting -= 1

    def _on_tick(self) -> None:
        self._tick = None
        if self.waiting:
            self._set()
            self._tick = asyncio.get_running_loop().call_later(TICK, self._on_tick)

    def close(self) -> None:
        self.closed = True
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._set()
