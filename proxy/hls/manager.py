"""The registry of running transcodes: scope -> :class:`Transcode`.

Starting is single-flight (concurrent first viewers of a channel share one start) and
bounded by the NextPVR session pool. The manager also remembers, for the last few VOD
(recording) generations, which segment index each proxy URL stands for: a VOD player never
reloads its playlist, so after the transcode restarts its old URLs are mapped by index.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from proxy.config import Config
from proxy.errors import ServiceUnavailable
from proxy.hls.scrub import LeakGuard
from proxy.hls.segments import SegmentCache
from proxy.hls.tokens import Target, TokenSigner
from proxy.hls.transcode import State, Transcode, TranscodeKey
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient

__all__ = ["TranscodeManager"]

log = logging.getLogger("proxy.hls")
#: stopped live playlists whose numbering a restart of the same scope continues
_CONTINUATIONS = 256
#: VOD generations whose index maps are kept (each is one dict of up to a playlist's segments)
_VOD_GENERATIONS = 8


@dataclass(slots=True)
class _VodMap:
    """Which segment index each proxy path of one VOD generation stands for."""

    scope: str
    index_of: dict[str, int]
    paths: list[str]



class TranscodeManager:
    """Scope -> running transcode; starts are single-flight; bounded by the session pool."""

    def __init__(self, config: Config, client: NextPVRClient, signer: TokenSigner, cache: SegmentCache, *,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.client = client
        self.signer = signer
        self.cache = cache
        self.metrics = metrics
        self.origins = [config.nextpvr.base_url.rstrip("/"), *config.nextpvr.extra_origins]
        self._running: dict[str, Transcode] = {}
        self._starting: dict[str, asyncio.Future[Transcode]] = {}
        self._vod_maps: OrderedDict[int, _VodMap] = OrderedDict()
        #: where each recently stopped live playlist left off (scope -> next sequence, discontinuities)
        self._continuations: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._closing = False
        self._changed = asyncio.Event()
        self._guard: tuple[int, LeakGuard] | None = None

    def leak_guard(self) -> LeakGuard:
        """What served playlists must not carry: the origins and every sid the pool has held
        (rebuilt only when a new sid was seen)."""
        history = self.client.pool.history
        if self._guard is None or self._guard[0] != history.version:
            self._guard = (history.version, LeakGuard(origins=self.origins, session_ids=history))
        return self._guard[1]

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some transcode started or stopped (bound it
        with ``asyncio.timeout``)."""
        while not predicate():
            await self._changed.wait()

    def running(self) -> list[Transcode]:
        return list(self._running.values())

    def find(self, scope: str) -> Transcode | None:
        return self._running.get(scope)

    async def get(self, key: TranscodeKey) -> Transcode:
        """The running transcode for ``key``, started now if needed (single-flight)."""
        if self._closing:
            raise ServiceUnavailable("the proxy is shutting down")
        scope = key.scope
        running = self._running.get(scope)
        if running is not None and running.state not in (State.FAILED, State.STOPPED):
            return running
        pending = self._starting.get(scope)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Transcode] = asyncio.get_running_loop().create_future()
        self._starting[scope] = future
        transcode = Transcode(key, self)
        carry_on = self._continuations.pop(scope, None)
        if carry_on is not None:
            transcode.live.seed(*carry_on)
        try:
            await transcode.start()
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()
            else:
                future.cancel()
            raise
        finally:
            self._starting.pop(scope, None)
        self._running[scope] = transcode
        self._notify()
        future.set_result(transcode)
        log.info("%s: transcode running (generation %d)", scope, transcode.generation)
        return transcode

    def _forget(self, transcode: Transcode) -> None:
        if self._running.get(transcode.scope) is transcode:
            del self._running[transcode.scope]
            continuation = transcode.live.continuation()
            if continuation is not None:
                # a player may still hold this playlist: the next transcode of the scope carries on
                self._continuations[transcode.scope] = continuation
                while len(self._continuations) > _CONTINUATIONS:
                    self._continuations.popitem(last=False)
            self._notify()
            self.count_viewers()

    def count_viewers(self) -> None:
        """HLS is stateless: a viewer is a client that asked for a playlist within the last few
        target durations. Sets the ``hls`` viewer gauge (live channels and recording HLS)."""
        if self.metrics is not None:
            self.metrics.viewers.labels("hls").set(sum(t.viewer_count() for t in self._running.values()))

    # -- VOD segment indexes, shared across generations ---------------------------
    def remember_vod(self, generation: int, scope: str, media: list[str]) -> None:
        """Record which segment index each proxy URL of a VOD playlist stands for, so a player
        holding an old playlist still gets the right segment after the transcode restarted."""
        vod = _VodMap(scope, {}, [])
        for index, proxy_url in enumerate(media):
            parts = proxy_url.split("/")
            if len(parts) >= 4:
                vod.index_of[parts[3]] = index
                vod.paths.append(parts[3])
            else:
                vod.paths.append("")
        self._vod_maps[generation] = vod
        while len(self._vod_maps) > _VOD_GENERATIONS:
            self._vod_maps.popitem(last=False)

    def vod_map(self, generation: int) -> _VodMap | None:
        return self._vod_maps.get(generation)

    def vod_index(self, target: Target) -> int | None:
        vod = self._vod_maps.get(target.generation)
        if vod is None:
            return None
        token = self.signer.sign(vod.scope, target)
        return vod.index_of.get(token)

    async def close(self) -> None:
        """Stop every transcode (frees NextPVR's tuners)."""
        self._closing = True
        await asyncio.gather(*(t.stop("shutdown") for t in list(self._running.values())),
                             return_exceptions=True)
