"""Small asyncio primitives the services share: single-flight starts and change notification.

- :class:`SingleFlight`: concurrent callers asking for the same key share one run of the
  start coroutine (the first caller runs it, the others await its outcome). It holds only
  the runs in progress, so its size is bounded by what its owner lets start at once.
- :class:`OwnedFlight`: the same, but the run is a task owned by the flight, not by its first
  caller, so any caller may give up (its client left) without cancelling the run for the
  others; the run can ask whether anyone still waits. One task per key: bounded by the keys.
- :class:`Notifier`: "something changed" as a swapped event, so a waiter re-checks its
  predicate after every change without polling (tests and shutdown wait on it).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Notifier", "OwnedFlight", "SingleFlight"]

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


class _Run(Generic[V]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.waiters = 0


class OwnedFlight(Generic[K, V]):
    """One task per key runs ``start``; callers await it shielded and are counted while they wait."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._runs: dict[K, _Run[V]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    def waiters(self, key: K) -> int:
        """Callers still waiting for the run of ``key`` (0: everyone who asked has gone)."""
        run = self._runs.get(key)
        return run.waiters if run is not None else 0

    async def run(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]) -> V:
        run = self._runs.get(key)
        if run is None:
            task = asyncio.get_running_loop().create_task(start(), name=f"{self._name}-{key}")
            run = _Run(task)
            self._runs[key] = run
            task.add_done_callback(functools.partial(self._done, key, run))
        run.waiters += 1
        try:
            # shielded: a caller that is cancelled leaves; the run goes on for the others
            return await asyncio.shield(run.task)
        finally:
            run.waiters -= 1

    def _done(self, key: K, run: _Run[V], task: asyncio.Task[V]) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters (if any) re-raise it themselves

    async def cancel_all(self) -> None:
        """Cancel every run and wait until each has finished (shutdown)."""
        tasks = [run.task for run in self._runs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
