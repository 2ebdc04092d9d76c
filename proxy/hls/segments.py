"""Single-flight segment fetches and a shared cache bounded in bytes.

Every viewer of a live channel asks for the same segments. The first request (or the
transcode's prefetcher) starts one fetch from NextPVR; everyone else attaches to it and
receives the bytes *as they arrive*, not after the download ends. Finished segments stay
in an LRU cache (cachetools) whose size is counted in bytes, so a late viewer, or one
that lags behind the live edge, is served without another NextPVR request.

Memory is bounded by ``cache_bytes`` for finished segments plus
``max_inflight * segment_max_bytes`` for fetches still running. A failed fetch is never
cached: the next request starts a new one.

The fetch runs in a task owned by the cache, not by a request handler, so a viewer that
disconnects never aborts the download the others are reading.

Under asyncio's own event loop on Linux, a finished segment moves from its chunks into an anonymous
memory file (``memfile.py``) that responses send with ``sendfile(2)``, without copying it through
Python; the cache's byte bound covers those files exactly as it covered the chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass

from cachetools import LRUCache

from proxy.errors import (
    NextPVRError,
    NextPVRFailed,
    NextPVRTimeout,
    NextPVRUnreachable,
    NotFound,
    ProxyError,
    UpstreamTooLarge,
)
from proxy.hls import memfile
from proxy.hls.memfile import MemFile
from proxy.metrics import Metrics
from proxy.nextpvr.streams import UpstreamBody

__all__ = ["SegmentCache", "SegmentEntry", "UpstreamBody"]

log = logging.getLogger("proxy.hls.segments")


#: opens the segment from byte ``offset`` (0: the whole segment; above 0 it sends ``Range: bytes=offset-``)
Opener = Callable[[int], Awaitable[UpstreamBody]]
#: transient failures worth another try: resets, timeouts, 5xx; never 404 (gone) or "too large"
_RETRYABLE = (NextPVRUnreachable, NextPVRTimeout, NextPVRFailed)
_RETRIES = 2
_RETRY_DELAY = 0.1
#: size of the pieces a segment is read (and later written to every viewer) in: each piece costs every
#: viewer one write, send() and timeout; 256 KiB against 64 KiB: 200 viewers of one channel got ~1.35x
#: the MB/s (benchmarks/README.md, "live fan-out")
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class SegmentHead:
    content_type: str
    content_length: int | None


class SegmentEntry:
    """One segment: complete, or still arriving. Readers iterate it independently."""

    __slots__ = ("_event", "chunks", "done", "error", "file", "head", "key", "size")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.chunks: list[bytes] = []
        #: the finished bytes in a memory file (then ``chunks`` is empty): sent with sendfile
        self.file: MemFile | None = None
        self.size = 0
        self.head: SegmentHead | None = None
        self.done = False
        self.error: ProxyError | None = None
        self._event = asyncio.Event()

    def _notify(self) -> None:
        # swap the event so waiters wake once and new waiters wait for the next change
        event, self._event = self._event, asyncio.Event()
        event.set()

    def _append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._notify()

    def _finish(self, error: ProxyError | None = None) -> None:
        self.done = True
        self.error = error
        self._notify()

    async def wait_head(self) -> SegmentHead:
        """Wait until the upstream headers are known (or the fetch failed)."""
        while self.head is None:
            if self.done:
                raise self.error or NextPVRError("segment fetch ended without a response")
            await self._event.wait()
        return self.head

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The segment from its first byte, waiting for bytes still to come. Call it before any
        ``await``: it takes the chunk list (or the memory file) as it is now, so bytes that move into
        a memory file (and an eviction of that file) later do not take them away from this reader."""
        if self.file is not None:
            return self._from_file(self.file)
        return self._from_chunks(self.chunks)

    async def _from_file(self, file: MemFile) -> AsyncIterator[bytes]:
        if not file.acquire():
            raise NotFound("This segment left the cache; reload the playlist.")
        try:
            data = file.read()
        finally:
            file.release()
        yield data

    async def _from_chunks(self, chunks: list[bytes]) -> AsyncIterator[bytes]:
        index = 0
        while True:
            while index < len(chunks):
                yield chunks[index]
                index += 1
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            await self._event.wait()

    def body(self) -> bytes:
        """The whole body of a complete entry."""
        if self.file is not None:
            if not self.file.acquire():
                raise NotFound("This segment left the cache; reload the playlist.")
            try:
                return self.file.read()
            finally:
                self.file.release()
        return b"".join(self.chunks)


class _ByteLRU(LRUCache[Hashable, SegmentEntry]):
    def __init__(self, maxsize: int, on_evict: Callable[[SegmentEntry], None],
                 on_drop: Callable[[SegmentEntry], None]) -> None:
        super().__init__(maxsize=maxsize, getsizeof=lambda e: max(e.size, 1))
        self._on_evict = on_evict
        self._on_drop = on_drop

    def popitem(self) -> tuple[Hashable, SegmentEntry]:
        item = super().popitem()
        self._on_evict(item[1])
        return item

    def __setitem__(self, key: Hashable, value: SegmentEntry) -> None:
        old = self.get(key)
        super().__setitem__(key, value)  # ValueError (too large) leaves the old entry in place
        if old is not None and old is not value:
            self._on_drop(old)

    def __delitem__(self, key: Hashable) -> None:
        entry = self[key]
        super().__delitem__(key)
        self._on_drop(entry)

    def clear(self) -> None:  # cachetools clears its dict directly, past __delitem__
        entries = [self[key] for key in list(self)]
        super().clear()
        for entry in entries:
            self._on_drop(entry)


class SegmentCache:
    def __init__(
        self,
        *,
        cache_bytes: int,
        segment_max_bytes: int,
        max_inflight: int = 64,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._lru = _ByteLRU(max(cache_bytes, 1), self._evicted, self._dropped)
        #: finished segments go into memory files when sendfile can send them (asyncio's loop, Linux)
        try:
            zero_copy = memfile.supported(asyncio.get_running_loop())
        except RuntimeError:  # built outside a loop (tests of the cache alone): chunks only
            zero_copy = False
        self._max_files = memfile.max_files() if zero_copy else 0
        self._files = 0
        self._inflight: dict[Hashable, SegmentEntry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_of: dict[Hashable, asyncio.Task[None]] = {}
        self.segment_max_bytes = segment_max_bytes
        self.max_inflight = max_inflight
        self._closed = False

    # -- accounting ------------------------------------------------------
    @property
    def cached_bytes(self) -> int:
        return int(self._lru.currsize)

    @property
    def inflight_bytes(self) -> int:
        return sum(e.size for e in self._inflight.values())

    def __len__(self) -> int:
        return len(self._lru)

    def _evicted(self, entry: SegmentEntry) -> None:
        self._metrics.cache_evictions.inc()

    def _dropped(self, entry: SegmentEntry) -> None:
        """Every way an entry leaves the LRU (eviction, replacement, clear) ends here."""
        if entry.file is not None and entry.file.drop():
            self._files -= 1

    def _to_file(self, entry: SegmentEntry) -> None:
        """Move a cached entry's bytes into a memory file (it stays in memory if that fails)."""
        if self._files >= self._max_files or entry.size < memfile.MIN_FILE_BYTES or entry.file is not None:
            return
        try:
            entry.file = MemFile(entry.chunks, entry.size)
        except OSError as exc:
            log.warning("segment kept in memory: no memory file (%s)", exc)
            return
        entry.chunks = []  # readers already iterating keep their own reference to the list
        self._files += 1

    @property
    def files(self) -> int:
        """Cached segments held in memory files."""
        return self._files

    def _update_gauges(self) -> None:
        self._metrics.cache_bytes.set(self._lru.currsize)
        self._metrics.cache_entries.set(len(self._lru))

    # -- lookups ---------------------------------------------------------
    def peek(self, key: Hashable) -> SegmentEntry | None:
        """A complete cached entry, without starting anything."""
        entry = self._lru.get(key)
        return entry

    def get(self, key: Hashable, opener: Opener) -> SegmentEntry:
        """The entry for ``key``: cached, being fetched, or a fetch started now."""
        entry = self._lru.get(key) or self._inflight.get(key)
        if entry is not None:
            self._metrics.cache_hits.inc()
            return entry
        self._metrics.cache_misses.inc()
        return self._start(key, opener)

    def prefetch(self, key: Hashable, opener: Opener) -> None:
        """Start fetching ``key`` unless it is cached or running (no hit/miss counted)."""
        if key in self._lru or key in self._inflight or len(self._inflight) >= self.max_inflight:
            return
        self._metrics.cache_prefetches.inc()
        self._start(key, opener)

    def _start(self, key: Hashable, opener: Opener) -> SegmentEntry:
        if self._closed:
            raise ProxyError("the proxy is shutting down")
        if len(self._inflight) >= self.max_inflight:
            raise NextPVRError("too many segment downloads at once")
        entry = SegmentEntry(key)
        self._inflight[key] = entry
        task = asyncio.get_running_loop().create_task(self._fetch(entry, opener))
        self._tasks.add(task)
        self._task_of[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._task_of.get(key) is finished:
                del self._task_of[key]

        task.add_done_callback(done)
        return entry

    async def _fetch(self, entry: SegmentEntry, opener: Opener) -> None:
        try:
            await self._download(entry, opener)
        except ProxyError as exc:
            entry._finish(exc)
        except asyncio.CancelledError:
            entry._finish(NextPVRError("segment download cancelled"))
            raise
        except Exception as exc:  # a bug, not an upstream condition: readers must still finish
            log.exception("segment fetch failed unexpectedly")
            entry._finish(NextPVRError(f"segment download failed ({type(exc).__name__})"))
        else:
            entry._finish()
        finally:
            self._inflight.pop(entry.key, None)
            if entry.done and entry.error is None:
                with contextlib.suppress(ValueError):  # larger than the whole cache: attached readers only
                    self._lru[entry.key] = entry
                    self._to_file(entry)
            self._update_gauges()

    async def _download(self, entry: SegmentEntry, opener: Opener) -> None:
        """Fetch into ``entry``. A segment GET is idempotent, so a transient failure is retried
        (``_RETRIES`` times): before the first byte simply again, after it from where the
        bytes stopped (``Range: bytes=N-``), so readers already attached never notice."""
        retries = 0
        expected: int | None = None
        while True:
            offset = entry.size
            body: UpstreamBody | None = None
            try:
                body = await opener(offset)
                if offset == 0:
                    if body.content_length is not None and body.content_length > self.segment_max_bytes:
                        raise UpstreamTooLarge("segment larger than hls.segment_max_bytes")
                    expected = body.content_length
                    entry.head = SegmentHead(body.content_type, body.content_length)
                    entry._notify()
                skip = offset if body.status == 200 else 0  # upstream ignored the Range: drop what we have
                async for chunk in body.iter_chunks(_READ_CHUNK):
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    if entry.size + len(chunk) > self.segment_max_bytes:
                        raise UpstreamTooLarge("segment larger than hls.segment_max_bytes")
                    entry._append(chunk)
                    self._metrics.received_bytes.labels("hls").inc(len(chunk))
                if expected is not None and entry.size != expected:
                    raise NextPVRUnreachable("NextPVR ended the segment early")
                return
            except _RETRYABLE as exc:
                if retries >= _RETRIES or self._closed:
                    raise
                retries += 1
                log.info("segment download failed at byte %d (%s); retrying", entry.size, exc.message)
                await asyncio.sleep(_RETRY_DELAY * retries)
            finally:
                if body is not None:
                    await body.close()

    def cancel(self, predicate: Callable[[Hashable], bool]) -> int:
        """Cancel the running downloads whose key matches (a stopped transcode's segments)."""
        cancelled = 0
        for key, task in list(self._task_of.items()):
            if predicate(key):
                task.cancel()
                cancelled += 1
        return cancelled

    async def close(self) -> None:
        """Cancel running fetches and drop everything."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._lru.clear()
        self._update_gauges()
