"""Live MPEG-TS: one NextPVR connection per channel, fanned out to every viewer.

A tuner is the scarce resource, so every viewer of a channel shares one upstream
``/live?channeloid=`` connection. A reader task pulls chunks from NextPVR, aligns them
to 188-byte packets and pushes them into each viewer's queue. The queues are bounded in
bytes: a viewer that falls further behind than ``viewer_buffer_bytes`` is disconnected
(logged and counted) instead of slowing the others down or growing memory.

Where a new viewer starts: at the latest PAT + PMT followed by the most recent keyframe
(the reader keeps the bytes since the last keyframe, bounded by
``keyframe_cache_bytes``). A decoder can start there at once; the price is that the
viewer begins up to one GOP behind the live edge. A viewer that joins before any
keyframe was seen waits for the next one, or for a short deadline when the stream has no
recognisable video (radio), and then starts at a packet boundary after PAT + PMT.

Besides byte viewers, a stream has *taps*: in-process consumers (the HLS packager,
``proxy/packager/``) that receive the aligned packets with the analyzer's findings as they
arrive. A tap counts as a viewer for the linger, so one connection serves TS and HLS viewers.

When the last viewer (or tap) leaves, the upstream stays open for ``linger`` seconds so that
zapping back does not cost a new tuner. NextPVR ending the stream cleanly, or sending
nothing (not one whole packet, however many stray bytes) for ``upstream_idle_timeout``, ends it
for every viewer. A connection that
*breaks* (reset, truncated chunk, NextPVR restarting) while viewers remain is re-opened
(``reconnect``, up to ``reconnect_attempts`` in a row); the viewers continue from the next
keyframe of the new connection and taps are told, so the packager can splice its timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from proxy.asyncutil import Notifier, SingleFlight
from proxy.config import TSConfig
from proxy.errors import NextPVRError, NextPVRTimeout, ProxyError, ServiceUnavailable
from proxy.media.analyzer import StreamAnalyzer
from proxy.media.packets import PacketAligner
from proxy.metrics import Metrics
from proxy.nextpvr.streams import UpstreamBody
from proxy.ts.viewer import EndReason, Viewer

__all__ = ["ChannelStream", "EndReason", "LiveTSManager", "Tap", "Viewer"]

log = logging.getLogger("proxy.ts")

Opener = Callable[[], Awaitable[UpstreamBody]]
#: how long a viewer waits for a keyframe before it starts at any packet boundary
_KEYFRAME_WAIT = 3.0
#: a connection that lived this long restores the reconnect attempts (a break a day is not a loop)
_RECONNECT_RESET = 30.0


class Tap(Protocol):
    """An in-process consumer of a channel's packets (the HLS packager).

    Called on the reader task; must not block (a tap that falls behind bounds itself)."""

    def on_packets(self, packets: bytes, keyframes: list[int], analyzer: StreamAnalyzer, wall: float) -> None:
        """Aligned packets; ``keyframes`` are offsets into them; ``wall`` is when they arrived."""

    def on_reconnect(self) -> None:
        """The upstream broke and a new connection (with its own timestamps) follows."""

    def on_end(self, reason: str) -> None:
        """The stream is over; nothing follows."""


class ChannelStream:
    """The shared upstream connection of one channel and its viewers."""

    def __init__(self, channel_id: int, opener: Opener, config: TSConfig, *,
                 metrics: Metrics, on_closed: Callable[[ChannelStream], None],
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.channel_id = channel_id
        self._opener = opener
        self._config = config
        self._metrics = metrics
        self._on_closed = on_closed
        self._on_change = on_change
        #: viewers disconnected for falling behind, over the stream's life
        self.slow_disconnects = 0
        self.viewers: set[Viewer] = set()
        self.taps: list[Tap] = []
        self.connections = 0  # upstream connections opened over the stream's life
        #: bytes received from NextPVR and when the stream opened (the status page's bitrate)
        self.received_bytes = 0
        self.opened_at = time.monotonic()
        self.closed = False
        self._body: UpstreamBody | None = None
        self._task: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        self._aligner = PacketAligner()
        self._analyzer = StreamAnalyzer()
        self._gop: deque[bytes] = deque()
        self._gop_bytes = 0
        self._gop_wall = 0.0
        self._have_keyframe = False
        self._opened_at = 0.0

    # -- life cycle -------------------------------------------------------
    async def open(self) -> None:
        """Open the upstream connection; raises the NextPVR error (no tuner, ...) for the first viewer."""
        self._body = await self._opener()
        self.connections += 1
        self._opened_at = time.monotonic()
        self._gauge_upstream(+1)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ts-{self.channel_id}")

    async def close(self, reason: EndReason = EndReason.SHUTDOWN) -> None:
        if self.closed:
            return
        self.closed = True
        if self._linger is not None:
            self._linger.cancel()
        for viewer in list(self.viewers):
            viewer.end(reason)
        for tap in list(self.taps):
            tap.on_end(reason.value)
        self.taps.clear()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_body()
        self._on_closed(self)
        self._on_change()

    async def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            self._gauge_upstream(-1)
            await body.close()

    def _gauge_upstream(self, delta: int) -> None:
        self._metrics.upstream_streams.labels("ts_connection").inc(delta)
        self._metrics.tuners_in_use.inc(delta)

    # -- viewers ----------------------------------------------------------
    def add_viewer(self) -> Viewer:
        if self.closed:
            raise ServiceUnavailable("this channel's stream just ended; try again")
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        viewer = Viewer(self._config.viewer_buffer_bytes, self._overflow)
        self.viewers.add(viewer)
        if self._have_keyframe and self._gop_bytes + 2 * 188 <= viewer.limit:
            self._start_viewer(viewer, *self._gop)
        self._metrics.viewers.labels("ts").inc()
        self._on_change()
        return viewer

    def remove_viewer(self, viewer: Viewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.discard(viewer)
        viewer.end(EndReason.LEFT)
        self._metrics.viewers.labels("ts").dec()
        self._maybe_linger()
        self._on_change()

    def add_tap(self, tap: Tap) -> None:
        """Attach ``tap``; it gets the cached GOP at once (a packager starts on a held keyframe)."""
        if self.closed:
            raise ServiceUnavailable("this channel's stream just ended; try again")
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.taps.append(tap)
        if self._have_keyframe and self._gop:
            tap.on_packets(b"".join(self._gop), [0], self._analyzer, self._gop_wall)
        self._on_change()

    def remove_tap(self, tap: Tap, *, linger: bool = True) -> None:
        """Detach ``tap``. ``linger=False``: close at once if nobody else watches (the tuner is
        wanted elsewhere, e.g. by the transcode ``hls.mode: auto`` chose instead)."""
        if tap not in self.taps:
            return
        self.taps.remove(tap)
        if not linger and not self.viewers and not self.taps and not self.closed:
            self._closer = asyncio.get_running_loop().create_task(self.close(EndReason.LEFT))
        else:
            self._maybe_linger()
        self._on_change()

    @property
    def watched(self) -> bool:
        return bool(self.viewers or self.taps)

    def _maybe_linger(self) -> None:
        if not self.watched and not self.closed and self._linger is None:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(self._config.linger, self._linger_expired)

    def _linger_expired(self) -> None:
        self._linger = None
        if not self.watched and not self.closed:
            log.info("channel %d: no viewer for %.0fs, releasing the tuner", self.channel_id,
                     self._config.linger)
            # kept referenced: the loop holds tasks only weakly
            self._closer = asyncio.get_running_loop().create_task(self.close(EndReason.LEFT))

    def _overflow(self, viewer: Viewer) -> None:
        log.warning("channel %d: viewer fell more than %d bytes behind; disconnecting it",
                    self.channel_id, viewer.limit)
        self.slow_disconnects += 1
        self._metrics.slow_viewers.labels("ts").inc()
        self._on_change()

    def _start_viewer(self, viewer: Viewer, *parts: bytes) -> None:
        pat, pmt = self._analyzer.pat, self._analyzer.pmt
        viewer.started = True
        # the GOP's chunks are shared by every viewer's queue: joining them cost each new viewer a
        # private copy of up to a whole GOP (~1.3 MB at 5 Mbit/s), held until it was sent
        viewer.push((pat or b"") + (pmt or b""))
        for part in parts:
            viewer.push(part)

    @property
    def buffered_bytes(self) -> int:
        """Bytes the proxy holds for this channel: viewer queues plus the keyframe cache."""
        return sum(v.queued for v in self.viewers) + self._gop_bytes

    # -- the reader -------------------------------------------------------
    async def _run(self) -> None:
        reason = EndReason.UPSTREAM_ENDED
        attempts = self._config.reconnect_attempts if self._config.reconnect else 0
        reconnects_left = attempts
        try:
            while True:
                try:
                    await self._pump()
                    reason = EndReason.UPSTREAM_ENDED
                    break
                except NextPVRTimeout:
                    reason = EndReason.UPSTREAM_IDLE
                    break
                except NextPVRError as exc:
                    reason = EndReason.UPSTREAM_ERROR
                    if time.monotonic() - self._opened_at > _RECONNECT_RESET:
                        reconnects_left = attempts
                    if reconnects_left <= 0 or not self.watched:
                        log.warning("channel %d: upstream failed (%s)", self.channel_id, exc.message)
                        break
                    log.warning("channel %d: upstream broke (%s); reconnecting", self.channel_id, exc.message)
                    await self._close_body()
                    if not await self._reconnect(attempts - reconnects_left):
                        break
                    reconnects_left -= 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("channel %d: reader crashed", self.channel_id)
            reason = EndReason.UPSTREAM_ERROR
        log.info("channel %d: stream over (%s)", self.channel_id, reason.value)
        await self.close(reason)

    async def _reconnect(self, used: int) -> bool:
        """Re-open after a break, retrying with a growing pause (NextPVR restarting takes seconds)."""
        left = max(1, self._config.reconnect_attempts - used)
        for attempt in range(left):
            try:
                await self._reopen()
                return True
            except ProxyError as exc:
                log.warning("channel %d: reconnect failed (%s)", self.channel_id, exc.message)
                if attempt + 1 < left and self.watched:
                    await asyncio.sleep(0.5 * 2 ** (used + attempt))
        return False

    async def _reopen(self) -> None:
        self._body = await self._opener()
        self.connections += 1
        self._opened_at = time.monotonic()
        self._gauge_upstream(+1)
        self._metrics.ts_reconnects.inc()
        # the new connection has its own timestamps: everyone resumes at its first keyframe
        self._aligner = PacketAligner()
        self._analyzer = StreamAnalyzer()
        self._gop.clear()
        self._gop_bytes = 0
        self._have_keyframe = False
        for viewer in self.viewers:
            viewer.started = False
            viewer.joined_at = time.monotonic()
        for tap in list(self.taps):
            tap.on_reconnect()

    async def _pump(self) -> None:
        body = self._body
        assert body is not None
        # ``sock_read`` only notices silence: an upstream that drips a byte a second resets it forever
        # and holds its viewers on a 200 with nothing to play. Progress is a whole packet.
        idle = self._config.upstream_idle_timeout
        progress = time.monotonic()
        async for chunk in body.iter_chunks():
            self.received_bytes += len(chunk)
            self._metrics.received_bytes.labels("ts").inc(len(chunk))
            packets = self._aligner.feed(chunk)
            now = time.monotonic()
            if packets:
                progress = now
                self._dispatch(packets)
            elif now - progress > idle:
                raise NextPVRTimeout(f"NextPVR sent no whole packet in {idle:.0f}s")
            # a burst of buffered upstream data would otherwise be pushed chunk after chunk
            # without the viewers' writers getting a turn, and fill every queue at once
            await asyncio.sleep(0)
        tail = self._aligner.flush()  # the aligner holds one packet until it sees the next sync byte
        if tail:
            self._dispatch(tail)

    def _dispatch(self, packets: bytes) -> None:
        keyframes = self._analyzer.scan(packets)
        limit = self._config.keyframe_cache_bytes
        wall = time.time()
        for tap in list(self.taps):
            tap.on_packets(packets, keyframes, self._analyzer, wall)
        if keyframes:
            last = keyframes[-1]
            self._gop.clear()
            self._gop.append(packets[last:])
            self._gop_bytes = len(packets) - last
            self._gop_wall = wall
            self._have_keyframe = True
        elif self._have_keyframe:
            self._gop.append(packets)
            self._gop_bytes += len(packets)
            if self._gop_bytes > limit:
                # a GOP longer than the cache: new viewers wait for the next keyframe
                self._gop.clear()
                self._gop_bytes = 0
                self._have_keyframe = False
        now = time.monotonic()
        no_video = self._analyzer.pmt is not None and self._analyzer.video_pid is None
        for viewer in list(self.viewers):
            if viewer.started:
                viewer.push(packets)
            elif keyframes:
                self._start_viewer(viewer, packets[keyframes[0]:])
            elif no_video or now - viewer.joined_at > _KEYFRAME_WAIT:
                self._start_viewer(viewer, packets)
            if viewer.ended is EndReason.SLOW:
                # the same path as a viewer that left: if it was the last one, the linger starts
                self.remove_viewer(viewer)


class LiveTSManager:
    """Channel id -> its shared stream. Starting a channel is single-flight."""

    def __init__(self, config: TSConfig, opener_for: Callable[[int], Opener], *,
                 metrics: Metrics, max_channels: int = 64) -> None:
        self._config = config
        self._opener_for = opener_for
        self._metrics = metrics
        self._max_channels = max_channels
        self._streams: dict[int, ChannelStream] = {}
        self._starts: SingleFlight[int, ChannelStream] = SingleFlight()
        self._closing = False
        self._changes = Notifier()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after a viewer or stream changed (bound it with
        ``asyncio.timeout``)."""
        await self._changes.wait_for(predicate)

    def get(self, channel_id: int) -> ChannelStream | None:
        return self._streams.get(channel_id)

    def streams(self) -> list[ChannelStream]:
        return list(self._streams.values())

    async def join(self, channel_id: int) -> tuple[ChannelStream, Viewer]:
        """Attach a new viewer to ``channel_id``, opening the upstream if needed."""
        stream = await self.open(channel_id)
        return stream, stream.add_viewer()

    async def attach(self, channel_id: int, tap: Tap) -> ChannelStream:
        """Attach an in-process consumer (the packager) to ``channel_id``'s shared stream."""
        stream = await self.open(channel_id)
        stream.add_tap(tap)
        return stream

    async def open(self, channel_id: int) -> ChannelStream:
        """The running stream of ``channel_id``, opened if needed (single-flight)."""
        if self._closing:
            raise ServiceUnavailable("the proxy is shutting down")
        stream = self._streams.get(channel_id)
        if stream is None or stream.closed:
            if channel_id not in self._starts and len(self._streams) >= self._max_channels:
                raise ServiceUnavailable("too many live TS channels at once")
            stream = await self._starts.run(channel_id, lambda: self._open(channel_id))
        return stream

    async def _open(self, channel_id: int) -> ChannelStream:
        stream = ChannelStream(channel_id, self._opener_for(channel_id), self._config,
                               metrics=self._metrics, on_closed=self._closed, on_change=self._changes.notify)
        await stream.open()
        self._streams[channel_id] = stream
        return stream

    def _closed(self, stream: ChannelStream) -> None:
        if self._streams.get(stream.channel_id) is stream:
            del self._streams[stream.channel_id]

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(s.close(EndReason.SHUTDOWN) for s in list(self._streams.values())),
                             return_exceptions=True)
