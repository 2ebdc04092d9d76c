"""The registry of running transcodes: scope -> :class:`Transcode`.

Starting is single-flight (concurrent first viewers of a channel share one start) and
bounded by the NextPVR session pool. A start runs in a task of the manager, not of the
first request: a client that leaves does not cancel it for the others, and a start that
every requester left is stopped as soon as it is done (the proxy initiated it: NextPVR
would hold the tuner for 15-20 s otherwise). One start task per scope; ``close`` cancels
and awaits them. When a live transcode stops, where its playlist
numbering left off is kept (bounded), so the next transcode of the same scope continues it
for players still holding the old playlist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from proxy.asyncutil import Notifier, OwnedFlight
from proxy.config import Config
from proxy.errors import ServiceUnavailable
from proxy.hls.refresher import TranscodeServices
from proxy.hls.scrub import LeakGuard
from proxy.hls.segments import SegmentCache
from proxy.hls.tokens import TokenSigner
from proxy.hls.transcode import State, Transcode, TranscodeKey
from proxy.hls.vod_index import VodIndex
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient

__all__ = ["TranscodeManager"]

log = logging.getLogger("proxy.hls")
#: stopped live playlists whose numbering a restart of the same scope continues
_CONTINUATIONS = 256
#: VOD generations whose index maps are kept (each is one dict of up to a playlist's segments)
_VOD_GENERATIONS = 8


class TranscodeManager:
    """Scope -> running transcode; starts are single-flight; bounded by the session pool."""

    def __init__(self, config: Config, client: NextPVRClient, signer: TokenSigner, cache: SegmentCache, *,
                 metrics: Metrics) -> None:
        self.config = config
        self.client = client
        self.signer = signer
        self.cache = cache
        self.metrics = metrics
        self.vod_index = VodIndex(signer, max_generations=_VOD_GENERATIONS)
        #: the wall clock segment tokens are minted by (a test moves it to check their expiry)
        self.clock: Callable[[], float] = time.time
        self._guard: tuple[int, LeakGuard] | None = None
        self._services = TranscodeServices(
            config=config, client=client, signer=signer, cache=cache, metrics=metrics,
            vod_index=self.vod_index,
            origins=(config.nextpvr.base_url.rstrip("/"), *config.nextpvr.extra_origins),
            leak_guard=self.leak_guard, clock=lambda: self.clock())
        self._running: dict[str, Transcode] = {}
        self._starts: OwnedFlight[str, Transcode] = OwnedFlight("start")
        #: where each recently stopped live playlist left off (scope -> next sequence, discontinuities)
        self._continuations: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._closing = False
        self._changes = Notifier()

    def leak_guard(self) -> LeakGuard:
        """What served playlists must not carry: the origins and every sid the pool has held
        (rebuilt only when a new sid was seen)."""
        history = self.client.pool.history
        if self._guard is None or self._guard[0] != history.version:
            self._guard = (history.version, LeakGuard(origins=self._services.origins, session_ids=history))
        return self._guard[1]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some transcode started or stopped (bound it
        with ``asyncio.timeout``)."""
        await self._changes.wait_for(predicate)

    def running(self) -> list[Transcode]:
        return list(self._running.values())

    def find(self, scope: str) -> Transcode | None:
        return self._running.get(scope)

    async def get(self, key: TranscodeKey) -> Transcode:
        """The running transcode for ``key``, started now if needed (single-flight)."""
        if self._closing:
            raise ServiceUnavailable("the proxy is shutting down")
        running = self._running.get(key.scope)
        if running is not None and running.state not in (State.FAILED, State.STOPPED):
            return running
        try:
            return await self._starts.run(key.scope, lambda: self._start(key))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and not task.cancelling():
                # the start was cancelled under this waiter (shutdown), not the waiter itself: a status
                raise ServiceUnavailable("the proxy is shutting down") from None
            raise

    async def _start(self, key: TranscodeKey) -> Transcode:
        transcode = Transcode(key, self._services, on_stopped=self._stopped,
                              on_viewers_changed=self.count_viewers)
        carry_on = self._continuations.pop(key.scope, None)
        if carry_on is not None:
            transcode.live.seed(*carry_on)
        await transcode.start()
        if self._closing or not self._starts.waiters(key.scope):
            await transcode.stop("every client that asked for it left during the start")
            raise ServiceUnavailable("every client that asked for this stream left during its start")
        self._running[key.scope] = transcode
        self._changes.notify()
        log.info("%s: transcode running (generation %d)", key.scope, transcode.generation)
        return transcode

    def _stopped(self, transcode: Transcode) -> None:
        if self._running.get(transcode.scope) is transcode:
            del self._running[transcode.scope]
            continuation = transcode.live.continuation()
            if continuation is not None:
                # a player may still hold this playlist: the next transcode of the scope carries on
                self._continuations[transcode.scope] = continuation
                while len(self._continuations) > _CONTINUATIONS:
                    self._continuations.popitem(last=False)
            self._changes.notify()
            self.count_viewers()

    def count_viewers(self) -> None:
        """HLS is stateless: a viewer is a client that asked for a playlist within the last few
        target durations. Sets the ``hls`` viewer gauge (live channels and recording HLS)."""
        self.metrics.viewers.labels("hls").set(sum(t.viewer_count() for t in self._running.values()))

    async def close(self) -> None:
        """Stop every transcode (frees NextPVR's tuners)."""
        self._closing = True
        await self._starts.cancel_all()
        await asyncio.gather(*(t.stop("shutdown") for t in list(self._running.values())),
                             return_exceptions=True)
