"""NextPVR transcodes: one per (channel or recording, profile), shared by every viewer.

NextPVR's HLS exists only through its transcoder, and a transcode is tied to one
session id (nextpvr-api.md 4.5). So each :class:`Transcode` leases its own session from
the pool and walks the transcoder's life cycle:

- **start**: ``*.transcode.initiate``, poll ``*.transcode.status`` every
  ``hls.status_poll_interval`` until 100 % (``final`` below 100 is a failure), fetch the
  first playlist. Concurrent first requests share one start.
- **keep alive**: a background task re-fetches the live playlist every
  ``min(target duration / 2, hls.keepalive_interval)`` — which is also the activity
  NextPVR needs within its ~15 s — rewrites it, merges it into the stitched playlist and
  prefetches new segments; a VOD transcode is kept alive with ``*.transcode.lease``.
  Requests are answered from the prepared bytes and never wait for NextPVR.
- **recover**: code 8 (session gone) or a playlist answering 404 (transcode gone) starts
  a new *generation*: re-login if needed, initiate again, and stitch the new playlist
  onto the old one (see ``stitch.py``). Viewers keep getting the last good playlist
  meanwhile, so they see a stall, not an error.
- **stop**: when no viewer asked for a playlist or segment for ``hls.idle_timeout``,
  ``*.transcode.stop`` and the session goes back to the pool (the tuner goes back to
  NextPVR).

Generations are numbered by one process-wide counter, so a segment cached for an old
transcode can never be served as a segment of a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import itertools
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from yarl import URL

from proxy.errors import (
    NextPVRError,
    NextPVRUnparseable,
    NotFound,
    NoTunerAvailable,
    ProxyError,
    SessionExpired,
    TranscodeFailed,
)
from proxy.hls.rewrite import PlaylistError, PlaylistInfo, UriKind, UriSite, iter_rewrite
from proxy.hls.segments import SegmentEntry
from proxy.hls.stitch import Block, LivePlaylist, SequenceReset, split_media_playlist
from proxy.hls.tokens import ProxyUrlMapper, Target, TokenError
from proxy.nextpvr.envelope import is_session_error, parse_envelope
from proxy.nextpvr.session import NextPVRSession
from proxy.nextpvr.streams import UpstreamStream

__all__ = ["State", "Transcode", "TranscodeKey", "segment_key"]

if TYPE_CHECKING:
    from proxy.hls.manager import TranscodeManager

log = logging.getLogger("proxy.hls")

TranscodeKind = Literal["channel", "recording"]
_NO_TUNER = re.compile(r"no\s+tuner", re.IGNORECASE)
_GENERATIONS = itertools.count(1)
#: new live segments fetched ahead of viewers on the first playlist (players start ~3 from the end)
_FIRST_PREFETCH = 3
#: a client counts as watching if it asked for something this recently (multiples of the target duration)
_VIEWER_WINDOW = 3.0
_MAX_TRACKED_VIEWERS = 1024


_EXTINF = re.compile(r"^#EXTINF:([0-9]+(?:\.[0-9]*)?)", re.MULTILINE)


def segment_key(scope: str, target: Target) -> Hashable:
    """The shared cache's key for a live segment: its generation keeps a segment of an earlier
    transcode apart from one of a new transcode that NextPVR happens to name the same."""
    return (scope, target.generation, target.path_query)


def _listed_seconds(text: str) -> float:
    """Total duration of a playlist's segments (a quick scan: ~3 ms for 10,000 segments)."""
    return sum(float(d) for d in _EXTINF.findall(text))


class _SessionLost(Exception):
    """NextPVR answered code 8 where a playlist was expected."""


class _TranscodeGone(Exception):
    """NextPVR no longer has the transcode (its playlist answers 404)."""


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RECOVERING = "recovering"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class TranscodeKey:
    kind: TranscodeKind
    target_id: int
    profile: str

    @property
    def scope(self) -> str:
        prefix = "live" if self.kind == "channel" else "rec"
        return f"{prefix}.{self.target_id}.{self.profile}"


class _MediaRecorder:
    """Wraps the mapper to remember, in order, the upstream URL of every segment URI line."""

    def __init__(self, inner: ProxyUrlMapper) -> None:
        self.inner = inner
        self.media: list[str] = []

    def __call__(self, url: str, site: UriSite) -> str | None:
        out = self.inner(url, site)
        if site.tag is None and site.kind is UriKind.MEDIA:
            self.media.append(out or "")
        return out


class Transcode:
    def __init__(self, key: TranscodeKey, manager: TranscodeManager) -> None:
        self.key = key
        self.scope = key.scope
        self._m = manager
        self._config = manager.config
        self.state = State.STARTING
        self.generation = 0
        self.error: ProxyError | None = None
        self.session: NextPVRSession | None = None
        # a recording still in progress is an EVENT playlist: it only grows, keep all of it
        self.live = (LivePlaylist(max_window=64, clock=time.time) if key.kind == "channel"
                     else LivePlaylist(max_window=1_000_000))
        self.vod: bytes | None = None
        self.is_vod = False
        self.target_duration = 2
        self.last_activity = time.monotonic()
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self._ready = asyncio.Event()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._mapper: ProxyUrlMapper | None = None
        self._viewers: OrderedDict[Hashable, float] = OrderedDict()
        self._stopping = False

    # -- what handlers call --------------------------------------------------
    def touch(self, client: Hashable | None = None) -> None:
        now = time.monotonic()
        self.last_activity = now
        if client is not None:
            new_viewer = client not in self._viewers
            self._viewers[client] = now
            self._viewers.move_to_end(client)
            while len(self._viewers) > _MAX_TRACKED_VIEWERS:
                self._viewers.popitem(last=False)
            if new_viewer:
                self._m.count_viewers()

    def viewer_count(self) -> int:
        horizon = time.monotonic() - _VIEWER_WINDOW * max(self.target_duration, 1)
        while self._viewers:
            client, seen = next(iter(self._viewers.items()))
            if seen >= horizon:
                break
            del self._viewers[client]
        return len(self._viewers)

    async def playlist(self, client: Hashable | None = None) -> bytes:
        """The current playlist bytes, waiting for the first one if the transcode is starting."""
        self.touch(client)
        if not self._ready.is_set():
            await self._ready.wait()
        if self.state is State.FAILED and self.error is not None:
            raise self.error
        if self.vod is not None:
            return self.vod
        return self.live.render()

    def segment(self, target: Target) -> SegmentEntry:
        """The (shared) download of a segment this transcode listed."""
        self.touch()
        if target.kind != "media":
            raise NotFound("not a media segment")
        if self.is_vod:
            index = self._m.vod_index(target)
            if index is None:
                raise NotFound("this recording segment is no longer known; reload the playlist")
            return self._m.cache.get((self.scope, "vod", index),
                                     functools.partial(self._open_index, index))
        key = segment_key(self.scope, target)
        if target.generation != self.generation:
            cached = self._m.cache.peek(key)
            if cached is None:
                raise NotFound("this segment belongs to an earlier transcode; reload the playlist")
            return cached
        return self._m.cache.get(key, functools.partial(self._open, target))

    async def child_playlist(self, target: Target) -> bytes:
        """A playlist referenced from a multivariant playlist, fetched and rewritten."""
        self.touch()
        assert self.session is not None and self._mapper is not None
        sid = await self.session.sid()
        text, base = await self._fetch(URL(self._mapper.resolve(target, sid), encoded=True))
        out, _info = await self._rewrite(text, base, self._new_mapper(sid))
        return out.encode()

    # -- start / stop ----------------------------------------------------------
    async def start(self) -> None:
        """Start the transcode and fetch its first playlist; raises what NextPVR said."""
        started = time.monotonic()
        try:
            self.session = await self._m.client.pool.lease()
            await self._new_generation()
        except BaseException as exc:
            self.state = State.FAILED
            self.error = exc if isinstance(exc, ProxyError) else None
            if self.session is not None and self.generation:
                # initiated but unusable (a garbage or oversized playlist...): free the tuner now
                await asyncio.shield(self._m.client.transcode_stop(self.session, self.key.kind))
            await self._release()
            if self._m.metrics is not None:
                reason = exc.reason if isinstance(exc, ProxyError) else "error"
                self._m.metrics.transcode_starts.labels(reason).inc()
            raise
        self.state = State.RUNNING
        self.ready_at = time.monotonic()
        self._ready.set()
        if self._m.metrics is not None:
            self._m.metrics.transcode_starts.labels("ok").inc()
            self._m.metrics.transcode_start_duration.observe(self.ready_at - started)
            self._m.metrics.upstream_streams.labels("hls_transcode").inc()
            self._m.metrics.tuners_in_use.inc()
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
            await self._m.client.transcode_stop(self.session, self.key.kind)
        # downloads of this transcode's segments would only ask NextPVR for what it just dropped
        self._m.cache.cancel(lambda key: isinstance(key, tuple) and key[:1] == (self.scope,))
        await self._release()
        if was_running and self._m.metrics is not None:
            self._m.metrics.upstream_streams.labels("hls_transcode").dec()
            self._m.metrics.tuners_in_use.dec()
        self._m._forget(self)
        log.info("%s: transcode stopped (%s)", self.scope, reason)

    async def _release(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await self._m.client.pool.release(session)

    # -- generations -------------------------------------------------------------
    async def _new_generation(self) -> None:
        assert self.session is not None
        client = self._m.client
        try:
            await client.transcode_initiate(self.session, self.key.kind, self.key.target_id, self.key.profile)
        except TranscodeFailed as exc:
            if _NO_TUNER.search(exc.message):
                raise NoTunerAvailable(retry_after=self._m.config.nextpvr.no_tuner_retry_after) from exc
            raise
        self.generation = next(_GENERATIONS)
        await self._wait_ready()
        deadline = time.monotonic() + self._config.hls.start_timeout
        while True:
            await self._refresh(first=True)
            if self.vod is not None or self.live.last_sequence is not None or time.monotonic() > deadline:
                return
            await asyncio.sleep(self._config.hls.status_poll_interval)

    async def _wait_ready(self) -> None:
        assert self.session is not None
        interval = self._config.hls.status_poll_interval
        deadline = time.monotonic() + self._config.hls.start_timeout
        while True:
            status = await self._m.client.transcode_status(self.session, self.key.kind)
            if status.ready:
                return
            if status.failed:
                raise TranscodeFailed(
                    f"NextPVR's transcoder gave up on profile {self.key.profile!r} at {status.percentage}%",
                    profile=self.key.profile)
            if time.monotonic() > deadline:
                raise TranscodeFailed(
                    f"NextPVR's transcoder was not ready after {self._config.hls.start_timeout:.0f}s "
                    f"(profile {self.key.profile!r})", profile=self.key.profile)
            await asyncio.sleep(interval)

    # -- the keep-alive loop -----------------------------------------------------
    def _poll_interval(self) -> float:
        return max(0.2, min(self.target_duration / 2, self._config.hls.keepalive_interval))

    async def _keep_alive(self) -> None:
        failures = 0
        while True:
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval())
            self._m.count_viewers()
            idle = time.monotonic() - self.last_activity
            if idle > self._config.hls.idle_timeout:
                await self.stop(f"no viewer for {idle:.0f}s")
                return
            try:
                if self.is_vod:
                    assert self.session is not None
                    if not await self._m.client.transcode_lease(self.session, self.key.kind):
                        raise _TranscodeGone
                else:
                    await self._refresh(first=False)
                failures = 0
                if self.state is State.RECOVERING:
                    self.state = State.RUNNING
            except (_SessionLost, _TranscodeGone, SessionExpired, SequenceReset) as exc:
                failures += 1
                if not await self._recover(type(exc).__name__, failures):
                    return
            except NextPVRError as exc:
                failures += 1
                log.warning("%s: refreshing the playlist failed (%s)", self.scope, exc.message)
                if failures > self._config.hls.recover_attempts + 2:
                    await self._fail(exc)
                    return

    async def _recover(self, why: str, failures: int) -> bool:
        """Start a new generation after NextPVR lost the transcode. False when it gave up."""
        if failures > self._config.hls.recover_attempts:
            await self._fail(TranscodeFailed(f"NextPVR keeps losing the transcode of {self.scope}",
                                             profile=self.key.profile))
            return False
        self.state = State.RECOVERING
        log.warning("%s: NextPVR lost the transcode (%s); starting a new one", self.scope, why)
        if self._m.metrics is not None:
            self._m.metrics.transcode_recoveries.inc()
        assert self.session is not None
        try:
            if why in ("_SessionLost", "SessionExpired"):
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

    # -- fetching and rewriting ---------------------------------------------------
    async def _open(self, target: Target, offset: int = 0) -> UpstreamStream:
        if self.session is None or self._mapper is None:
            raise NotFound("this stream has stopped; reload the playlist")
        sid = await self.session.sid()
        url = URL(self._mapper.resolve(target, sid), encoded=True)
        # identity: a byte count must mean the same thing on the retry that resumes it
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return await self._m.client.open_stream(url, headers=headers)
        except NotFound:
            self._poke.set()  # the transcode may be gone: check now, not at the next poll
            raise

    async def _open_index(self, index: int, offset: int = 0) -> UpstreamStream:
        vod = self._m.vod_map(self.generation)
        if vod is None or index >= len(vod.paths):
            raise NotFound("this recording segment is not in the current playlist")
        target = self._m.signer.verify(self.scope, vod.paths[index], now=time.time())
        return await self._open(target, offset)

    def _new_mapper(self, sid: str, *, playback: float = 0.0) -> ProxyUrlMapper:
        # a VOD player fetches its playlist once and its last segment hours later: its tokens must
        # outlive the playback (``playback`` seconds) by the configured lifetime
        ttl = int(self._config.auth.token_ttl + playback)
        mapper = ProxyUrlMapper(self._m.signer, scope=self.scope, generation=self.generation,
                                expires=int(time.time()) + ttl, origins=self._m.origins, secrets=[sid])
        self._mapper = mapper
        return mapper

    async def _fetch(self, url: URL) -> tuple[str, str]:
        try:
            stream = await self._m.client.open_stream(url)
        except NotFound as exc:
            raise _TranscodeGone from exc
        async with stream:
            body = await stream.read(self._config.hls.playlist_max_bytes)
        if self._m.metrics is not None:
            self._m.metrics.received_bytes.labels("hls").inc(len(body))
        head = body.lstrip()[:1]
        if head in (b"<", b"{"):
            env = parse_envelope(body, f"{self.key.kind}.transcode.m3u8")
            if is_session_error(env):
                raise _SessionLost
            raise TranscodeFailed(f"NextPVR answered an error instead of the {self.scope} playlist",
                                  profile=self.key.profile)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NextPVRUnparseable("NextPVR's playlist is not UTF-8 text") from exc
        return text, str(url)

    async def _rewrite(self, text: str, base: str, mapper: Callable[[str, UriSite], str | None]
                       ) -> tuple[str, PlaylistInfo]:
        """Rewrite in slices, yielding to the event loop between them (large VOD playlists)."""
        job = iter_rewrite(text, base, mapper, lines_per_chunk=2000)
        parts: list[str] = []
        spent = 0.0
        try:
            chunks = job.chunks()
            while True:
                t0 = time.perf_counter()
                part = next(chunks, None)
                spent += time.perf_counter() - t0
                if part is None:
                    break
                parts.append(part)
                if len(text) > 65536:
                    await asyncio.sleep(0)
            info = job.info
        except PlaylistError as exc:
            raise NextPVRUnparseable(f"NextPVR's playlist for {self.scope} is malformed ({exc})") from exc
        if self._m.metrics is not None:
            self._m.metrics.rewrite_duration.observe(spent)
        return "".join(parts), info

    async def _refresh(self, *, first: bool) -> None:
        client = self._m.client
        assert self.session is not None
        sid = await self.session.sid()
        text, base = await self._fetch(client.transcode_playlist_url(sid, self.key.kind))
        playback = _listed_seconds(text) if self.key.kind == "recording" else 0.0
        recorder = _MediaRecorder(self._new_mapper(sid, playback=playback))
        rewritten, info = await self._rewrite(text, base, recorder)
        if info.target_duration:
            self.target_duration = info.target_duration
        if info.is_master:
            self.vod = rewritten.encode()
            return
        if info.endlist:
            # a finished recording: a VOD playlist that never changes; segments are found by index
            self.is_vod = True
            self._m.remember_vod(self.generation, self.scope, recorder.media)
            self.vod = rewritten.encode()
            return
        try:
            parsed = split_media_playlist(rewritten)
        except ValueError as exc:
            raise NextPVRUnparseable(f"NextPVR's playlist for {self.scope} is malformed ({exc})") from exc
        fresh = self.live.update(self.generation, parsed)
        if fresh and self._config.hls.prefetch:
            self._prefetch(parsed.blocks, fresh, recorder.media, first=first)

    def _prefetch(self, blocks: list[Block], fresh: list[int], media: list[str], *, first: bool) -> None:
        if len(media) != len(blocks):
            return  # a URI line the recorder did not see as media; skip rather than guess
        by_seq = {b.upstream_seq: i for i, b in enumerate(blocks)}
        wanted = fresh[-_FIRST_PREFETCH:] if first else fresh
        now = time.time()
        for seq in wanted:
            proxy_url = media[by_seq[seq]]
            parts = proxy_url.split("/")
            if len(parts) < 4 or parts[2] != self.scope:
                continue
            try:
                target = self._m.signer.verify(self.scope, parts[3], now=now)
            except TokenError:
                continue
            key = segment_key(self.scope, target)
            self._m.cache.prefetch(key, functools.partial(self._open, target))
