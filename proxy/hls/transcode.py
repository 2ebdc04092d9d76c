"""NextPVR transcodes: one per (channel or recording, profile), shared by every viewer.

NextPVR's HLS exists only through its transcoder, and a transcode is tied to one
session id (nextpvr-api.md 4.5). So each :class:`Transcode` leases its own session from
the pool and walks the transcoder's life cycle:

- **start**: ``*.transcode.initiate``, poll ``*.transcode.status`` every
  ``hls.status_poll_interval`` until 100 % (``final`` below 100 is a failure), fetch the
  first playlist. Concurrent first requests share one start (``manager.py``).
- **keep alive**: a background task re-fetches the live playlist every
  ``min(target duration / 2, hls.keepalive_interval)`` — which is also the activity
  NextPVR needs within its ~15 s — through the :class:`~proxy.hls.refresher.PlaylistRefresher`;
  a VOD transcode is kept alive with ``*.transcode.lease``. Requests are answered from the
  prepared bytes and never wait for NextPVR.
- **recover**: code 8 (session gone) or a playlist answering 404 (transcode gone) starts
  a new *generation*: re-login if needed, initiate again, and stitch the new playlist
  onto the old one (see ``stitch.py``). Viewers keep getting the last good playlist
  meanwhile, so they see a stall, not an error.
- **stop**: when no viewer asked for a playlist or segment for ``hls.idle_timeout``,
  ``*.transcode.stop`` and the session goes back to the pool (the tuner goes back to
  NextPVR); ``on_stopped`` tells the owner.

Generations are numbered by one process-wide counter, so a segment cached for an old
transcode can never be served as a segment of a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from collections.abc import Callable, Hashable

from proxy.errors import (
    NextPVRError,
    NextPVRTimeout,
    NoTunerAvailable,
    ProxyError,
    SessionExpired,
    TranscodeFailed,
    TranscodeLost,
)
from proxy.hls.refresher import PlaylistRefresher, TranscodeServices, segment_key
from proxy.hls.segments import SegmentEntry
from proxy.hls.stitch import LivePlaylist, SequenceReset
from proxy.hls.tokens import Target
from proxy.hls.urls import TranscodeKey, TranscodeKind
from proxy.hls.viewers import ViewerTracker
from proxy.nextpvr.session import NextPVRSession

# TranscodeKey, TranscodeKind and segment_key are re-exported: handlers import them from here
__all__ = ["State", "Transcode", "TranscodeKey", "TranscodeKind", "segment_key"]

log = logging.getLogger("proxy.hls")

_GENERATIONS = itertools.count(1)


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RECOVERING = "recovering"
    FAILED = "failed"
    STOPPED = "stopped"


class Transcode:
    """The life cycle of one NextPVR transcode: session lease, start, keep-alive, recovery, stop.

    ``on_stopped`` is called once, when it stopped; ``on_viewers_changed`` when the viewer count
    may have moved (a new client, a keep-alive tick).
    """

    def __init__(self, key: TranscodeKey, services: TranscodeServices, *,
                 on_stopped: Callable[[Transcode], None], on_viewers_changed: Callable[[], None]) -> None:
        self.key = key
        self.scope = key.scope
        self._s = services
        self._hls = services.config.hls
        self._on_stopped = on_stopped
        self._on_viewers_changed = on_viewers_changed
        self.state = State.STARTING
        self.error: ProxyError | None = None
        self.session: NextPVRSession | None = None
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self._ready = asyncio.Event()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: ``*.transcode.initiate`` was sent: from then on the proxy owns a tuner and must stop it
        self._initiated = False
        self.viewers = ViewerTracker(on_viewers_changed)
        self.media = PlaylistRefresher(key, services, session=lambda: self.session,
                                       on_segment_gone=self._poke.set)

    # -- read by handlers and the manager -------------------------------------------
    @property
    def generation(self) -> int:
        return self.media.generation

    @property
    def live(self) -> LivePlaylist:
        return self.media.live

    @property
    def is_vod(self) -> bool:
        return self.media.is_vod

    @property
    def target_duration(self) -> int:
        return self.media.target_duration

    @property
    def last_activity(self) -> float:
        return self.viewers.last_activity

    def touch(self, client: Hashable | None = None) -> None:
        self.viewers.touch(client)

    def viewer_count(self) -> int:
        return self.viewers.count(self.media.target_duration)

    async def playlist(self, client: Hashable | None = None) -> bytes:
        """The current playlist bytes, waiting for the first one if the transcode is starting."""
        self.touch(client)
        if not self._ready.is_set():
            await self._ready.wait()
        if self.state is State.FAILED and self.error is not None:
            raise self.error
        return self.media.body()

    def segment(self, target: Target) -> SegmentEntry:
        """The (shared) download of a segment this transcode listed."""
        self.touch()
        return self.media.segment(target)

    async def child_playlist(self, target: Target) -> bytes:
        """A playlist referenced from a multivariant playlist, fetched and rewritten."""
        self.touch()
        return await self.media.child_playlist(target)

    # -- start / stop ----------------------------------------------------------
    async def start(self) -> None:
        """Start the transcode and fetch its first playlist; raises what NextPVR said."""
        started = time.monotonic()
        client, metrics = self._s.client, self._s.metrics
        try:
            self.session = await client.pool.lease()
            await self._first_generation()
        except BaseException as exc:
            self.state = State.FAILED
            self.error = exc if isinstance(exc, ProxyError) else None
            if self.session is not None and self._initiated:
                # initiated but unusable (a garbage or oversized playlist, a start cancelled at
                # shutdown, even while the initiate was in flight): free the tuner now
                await asyncio.shield(client.transcode_stop(self.session, self.key.kind))
            await self._release()
            metrics.transcode_starts.labels(exc.reason if isinstance(exc, ProxyError) else "error").inc()
            raise
        self.state = State.RUNNING
        self.ready_at = time.monotonic()
        self._ready.set()
        metrics.transcode_starts.labels("ok").inc()
        metrics.transcode_start_duration.observe(self.ready_at - started)
        metrics.upstream_streams.labels("hls_transcode").inc()
        metrics.tuners_in_use.inc()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._keep_alive(), name=f"transcode-{self.scope}")

    async def stop(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        was_running = self.state in (State.RUNNING, State.RECOVERING)
        if self.state is not State.FAILED:
            self.state = State.STOPPED
        self._ready.set()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.session is not None:
            await self._s.client.transcode_stop(self.session, self.key.kind)
        self.media.cancel_downloads()
        await self._release()
        if was_running:
            self._s.metrics.upstream_streams.labels("hls_transcode").dec()
            self._s.metrics.tuners_in_use.dec()
        self._on_stopped(self)
        log.info("%s: transcode stopped (%s)", self.scope, reason)

    async def _release(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await self._s.client.pool.release(session)

    # -- generations -------------------------------------------------------------
    async def _first_generation(self) -> None:
        """The start, bounded in total by ``hls.start_timeout`` (a NextPVR that drips its answers
        never holds a viewer longer); a transcode lost on its first playlist (code 8, 404) gets the
        recovery a running one gets: a re-login if the session went, and one more initiate."""
        limit = self._hls.start_timeout
        try:
            async with asyncio.timeout(limit):
                try:
                    await self._new_generation()
                except (TranscodeLost, SessionExpired) as exc:
                    log.warning("%s: NextPVR lost the transcode while it started (%s); starting it again",
                                self.scope, _describe(exc))
                    self._s.metrics.transcode_recoveries.inc()
                    assert self.session is not None
                    if isinstance(exc, SessionExpired) or exc.session_lost:
                        await self.session.relogin(await self.session.sid())
                    await self._new_generation()
        except TimeoutError:
            raise NextPVRTimeout(f"NextPVR did not start the transcode within {limit:g} s") from None

    async def _new_generation(self) -> None:
        assert self.session is not None
        first = not self._initiated
        self._initiated = True  # set before the answer: a start cancelled meanwhile still stops it
        try:
            await self._s.client.transcode_initiate(self.session, self.key.kind, self.key.target_id,
                                                    self.key.profile)
        except (NoTunerAvailable, TranscodeFailed):
            if first:
                self._initiated = False  # NextPVR said no: nothing of ours runs
            raise
        self.media.generation = next(_GENERATIONS)
        await self._wait_ready()
        deadline = time.monotonic() + self._hls.start_timeout
        while True:
            await self.media.refresh(first=True)
            if self.media.has_playlist or time.monotonic() > deadline:
                return
            await asyncio.sleep(self._hls.status_poll_interval)

    async def _wait_ready(self) -> None:
        assert self.session is not None
        deadline = time.monotonic() + self._hls.start_timeout
        while True:
            status = await self._s.client.transcode_status(self.session, self.key.kind)
            if status.ready:
                return
            if status.failed:
                raise TranscodeFailed(
                    f"NextPVR's transcoder gave up on profile {self.key.profile!r} at {status.percentage}%",
                    profile=self.key.profile)
            if time.monotonic() > deadline:
                raise TranscodeFailed(
                    f"NextPVR's transcoder was not ready after {self._hls.start_timeout:.0f}s "
                    f"(profile {self.key.profile!r})", profile=self.key.profile)
            await asyncio.sleep(self._hls.status_poll_interval)

    # -- the keep-alive loop -----------------------------------------------------
    def _poll_interval(self) -> float:
        return max(0.2, min(self.media.target_duration / 2, self._hls.keepalive_interval))

    async def _keep_alive(self) -> None:
        failures = 0
        while True:
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval())
            self._on_viewers_changed()
            idle = self.viewers.idle_for()
            if idle > self._hls.idle_timeout:
                await self.stop(f"no viewer for {idle:.0f}s")
                return
            try:
                if self.media.is_vod:
                    assert self.session is not None
                    if not await self._s.client.transcode_lease(self.session, self.key.kind):
                        raise TranscodeLost("NextPVR has no transcode to lease", session_lost=False)
                else:
                    await self.media.refresh(first=False)
                failures = 0
                if self.state is State.RECOVERING:
                    self.state = State.RUNNING
            except (TranscodeLost, SessionExpired, SequenceReset) as exc:
                failures += 1
                if not await self._recover(exc, failures):
                    return
            except NextPVRError as exc:
                failures += 1
                log.warning("%s: refreshing the playlist failed (%s)", self.scope, exc.message)
                if failures > self._hls.recover_attempts + 2:
                    await self._fail(exc)
                    return

    async def _recover(self, why: TranscodeLost | SessionExpired | SequenceReset, failures: int) -> bool:
        """Start a new generation after NextPVR lost the transcode. False when it gave up."""
        if failures > self._hls.recover_attempts:
            await self._fail(TranscodeFailed(f"NextPVR keeps losing the transcode of {self.scope}",
                                             profile=self.key.profile))
            return False
        self.state = State.RECOVERING
        log.warning("%s: NextPVR lost the transcode (%s); starting a new one", self.scope, _describe(why))
        self._s.metrics.transcode_recoveries.inc()
        assert self.session is not None
        try:
            if isinstance(why, SessionExpired) or (isinstance(why, TranscodeLost) and why.session_lost):
                stale = await self.session.sid()
                await self.session.relogin(stale)
            await self._new_generation()
        except NoTunerAvailable as exc:
            await self._fail(exc)
            return False
        except NextPVRError as exc:
            log.warning("%s: restarting the transcode failed (%s)", self.scope, exc.message)
            await asyncio.sleep(min(0.5 * failures, 2.0))
            return True
        self.state = State.RUNNING
        return True

    async def _fail(self, exc: ProxyError) -> None:
        log.warning("%s: giving up (%s)", self.scope, exc.message)
        self.error = exc
        self.state = State.FAILED
        await self.stop("failed")


def _describe(why: Exception) -> str:
    if isinstance(why, TranscodeLost):
        return "session lost" if why.session_lost else "transcode gone"
    if isinstance(why, SessionExpired):
        return "session expired"
    return "sequence reset"
