"""Two small asyncio primitives the services share: single-flight starts and change notification.

- :class:`SingleFlight`: concurrent callers asking for the same key share one run of the
  start coroutine (the first caller runs it, the others await its outcome). It holds only
  the runs in progress, so its size is bounded by what its owner lets start at once.
- :class:`Notifier`: "something changed" as a swapped event, so a waiter re-checks its
  predicate after every change without polling (tests and shutdown wait on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Notifier", "SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """One run of ``start`` per key at a time; concurrent callers share its result or exception."""

    def __init__(self) -> None:
        self._pending: dict[K, asyncio.Future[V]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self, key: K, start: Callable[[], Awaitable[V]]) -> V:
        pending = self._pending.get(key)
        if pending is not None:
            # shielded: a waiter that gives up must not cancel the start others wait for
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await start()
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: concurrent waiters re-raise it themselves
            else:
                future.cancel()
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(value)
        return value


class Notifier:
    """``notify()`` wakes every ``wait_for`` waiter, which then re-checks its predicate."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        # swap before setting: a waiter woken now waits on the new event next time round
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some change (bound it with ``asyncio.timeout``)."""
        while not predicate():
            await self._changed.wait()
