"""The XMLTV guide, built in the background and served from memory.

A request for ``/epg.xml`` never waits on NextPVR: a task rebuilds the guide every
``refresh_interval`` seconds (sooner after a failure, with a growing back-off) and swaps the
finished :class:`GuideDocument` in at once. Until the first build finishes there is no
document; :attr:`GuideCache.ready` is set when there is, and :attr:`GuideCache.last_error`
says why the latest attempt failed (readiness reports both).

Bounds: one build at a time; listings are fetched for ``concurrency`` channels at once and
rendered to bytes per channel as they arrive (the parsed listings of a channel are dropped
right away); at most ``max_programmes`` programmes. What stays in memory is the body as
bytes plus its deflate stream, prepared once per build, and up to ``_RENDITIONS`` small
heads (the ``<channel>`` part, whose icon URLs depend on the address the client used).

Gzip without compressing per request: the head is deflated with a sync flush (byte
aligned, not final) and followed by the body's deflate stream, compressed once from a
fresh compressor (so it refers to nothing before itself). Head, body and the gzip header
and trailer (CRC-32 and length of head + body) form one valid gzip member.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from proxy.errors import GuideBuildFailed, ProxyError
from proxy.lineup.xmltv import XMLTV_TAIL, programme_elements, xmltv_head
from proxy.nextpvr.models import Channel, Listing

__all__ = ["GuideCache", "GuideDocument", "Rendition"]

log = logging.getLogger("proxy.lineup")

ChannelSource = Callable[[], Awaitable[Sequence[Channel]]]
ListingSource = Callable[[int, float, float], Awaitable[Sequence[Listing]]]

#: programmes that started this long ago are still listed (what is on now, and a little before)
LOOKBACK_SECONDS = 2 * 3600.0
#: heads kept for different client-facing addresses
_RENDITIONS = 8
#: first retry after a failed build, doubled per failure up to the refresh interval
_RETRY_FIRST = 5.0
_GZIP_LEVEL = 6


@dataclass(frozen=True, slots=True)
class Rendition:
    """The document as served at one address: head bytes plus what gzip needs."""

    head: bytes
    head_deflate: bytes
    crc: int
    size: int
    etag: str
    gzip_etag: str


class GuideDocument:
    """One finished build: the programme body (plain and deflated), shared by every client."""

    def __init__(self, channels: Sequence[Channel], body: bytes, body_deflate: bytes, *,
                 built_at: float, digest: str, programmes: int) -> None:
        self.channels = tuple(channels)
        self.body = body
        self.body_deflate = body_deflate
        self.built_at = built_at
        self.digest = digest
        self.programmes = programmes
        self._renditions: OrderedDict[tuple[str, str], Rendition] = OrderedDict()

    async def rendition(self, base: str, query: str = "") -> Rendition:
        key = (base, query)
        found = self._renditions.get(key)
        if found is not None:
            self._renditions.move_to_end(key)
            return found
        head = xmltv_head(self.channels, base=base, query=query, generated=self.built_at).encode()
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        head_deflate = compressor.compress(head) + compressor.flush(zlib.Z_SYNC_FLUSH)
        # zlib releases the GIL for large buffers: the CRC of a big body does not stall the loop
        crc = await asyncio.to_thread(zlib.crc32, self.body, zlib.crc32(head))
        tag = f"{self.digest}-{hashlib.blake2b(head, digest_size=6).hexdigest()}"
        made = Rendition(head=head, head_deflate=head_deflate, crc=crc, size=len(head) + len(self.body),
                         etag=f'"{tag}"', gzip_etag=f'"{tag}-gz"')
        self._renditions[key] = made
        while len(self._renditions) > _RENDITIONS:
            self._renditions.popitem(last=False)
        return made

    def gzip_parts(self, rendition: Rendition) -> tuple[bytes, bytes, bytes, bytes]:
        header = b"\x1f\x8b\x08\x00" + struct.pack("<I", int(self.built_at)) + b"\x00\xff"
        trailer = struct.pack("<II", rendition.crc, rendition.size & 0xFFFFFFFF)
        return header, rendition.head_deflate, self.body_deflate, trailer


class GuideCache:
    def __init__(
        self,
        *,
        channels: ChannelSource,
        listings: ListingSource,
        days: int,
        refresh_interval: float,
        concurrency: int = 4,
        max_programmes: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._channels = channels
        self._listings = listings
        self._days = max(1, days)
        self._refresh = max(1.0, refresh_interval)
        self._concurrency = max(1, concurrency)
        self._max_programmes = max_programmes
        self._clock = clock
        #: set once the first build has finished (part of readiness)
        self.ready = asyncio.Event()
        #: why the latest build failed; None after a success
        self.last_error: str | None = None
        self.document: GuideDocument | None = None
        #: finished builds, and attempts (finished or failed)
        self.builds = 0
        self.attempts = 0
        #: consecutive failed attempts
        self.failures = 0
        #: channels skipped in the latest build because their listings failed
        self.skipped: tuple[int, ...] = ()
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="guide-builder")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def refresh_soon(self) -> None:
        """Start the next build now instead of at the end of the interval."""
        self._wake.set()

    async def wait_for_build(self, count: int) -> None:
        """Until at least ``count`` builds have finished (callers bound the wait)."""
        while self.builds < count:
            await self._settled.wait()

    async def wait_for_attempts(self, count: int) -> None:
        """Until at least ``count`` builds were attempted, failed ones included."""
        while self.attempts < count:
            await self._settled.wait()

    def _settle(self) -> None:
        self.attempts += 1
        settled, self._settled = self._settled, asyncio.Event()
        settled.set()

    async def _run(self) -> None:
        delay = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.build()
            except ProxyError as exc:
                delay = self._failed(exc.message)
            except Exception as exc:
                log.exception("guide build failed unexpectedly")
                delay = self._failed(f"internal error ({type(exc).__name__})")
            else:
                self.failures = 0
                delay = self._refresh
            self._settle()

    def _failed(self, message: str) -> float:
        """Record a failed attempt; the delay before the next one (a growing back-off)."""
        self.failures += 1
        self.last_error = message
        delay = min(self._refresh, _RETRY_FIRST * 2.0 ** min(self.failures - 1, 10))
        log.warning("guide build failed (%s); next attempt in %.0f s", message, delay)
        return delay

    async def build(self) -> GuideDocument:
        """One build; raises when no channel's listings could be had."""
        started = time.monotonic()
        now = self._clock()
        channels = tuple(await self._channels())
        start, end = now - LOOKBACK_SECONDS, now + self._days * 86400.0
        gate = asyncio.Semaphore(self._concurrency)
        chunks: dict[int, bytes] = {}
        failed: dict[int, str] = {}
        budget = [self._max_programmes]

        async def one(channel: Channel) -> None:
            async with gate:
                try:
                    listings = await self._listings(channel.id, start, end)
                except ProxyError as exc:
                    log.warning("guide: listings of channel %s (id %d) failed, channel skipped: %s",
                                channel.formatted_number, channel.id, exc.message)
                    failed[channel.id] = exc.message
                    return
            wanted = sorted((x for x in listings if x.end > start and x.start < end), key=lambda x: x.start)
            if len(wanted) > budget[0]:
                log.warning("guide: more than %d programmes; channel %s truncated",
                            self._max_programmes, channel.formatted_number)
                wanted = wanted[:budget[0]]
            budget[0] -= len(wanted)
            chunks[channel.id] = "".join(programme_elements(channel, wanted)).encode()

        await asyncio.gather(*(one(c) for c in channels))
        if channels and len(failed) == len(channels):
            first = next(iter(failed.values()))
            raise GuideBuildFailed(f"NextPVR gave no listings for any channel ({first})")
        programmes = self._max_programmes - budget[0]
        ordered = [chunks[c.id] for c in channels if c.id in chunks]
        document = await asyncio.to_thread(_finish, channels, ordered, now, programmes)
        previous = self.document
        if previous is None or previous.digest != document.digest:
            self.document = document
        self.skipped = tuple(failed)
        self.last_error = None
        self.builds += 1
        self.ready.set()
        log.info("guide built: %d channels, %d programmes, %d skipped, %d bytes in %.1f s%s",
                 len(channels), programmes, len(failed), len(self.document.body) if self.document else 0,
                 time.monotonic() - started, "" if self.document is document else " (unchanged)")
        return self.document if self.document is not None else document


def _finish(channels: Sequence[Channel], chunks: list[bytes], built_at: float,
            programmes: int) -> GuideDocument:
    """Join, digest and deflate the body (run in a thread: CPU-bound on big guides)."""
    body = b"".join((*chunks, XMLTV_TAIL.encode()))
    digest = hashlib.blake2b(digest_size=10)
    for c in channels:
        digest.update(repr((c.id, c.name, c.formatted_number, c.has_icon)).encode())
    digest.update(body)
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    body_deflate = compressor.compress(body) + compressor.flush(zlib.Z_FINISH)
    return GuideDocument(channels, body, body_deflate, built_at=built_at, digest=digest.hexdigest(),
                         programmes=programmes)
