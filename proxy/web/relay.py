"""Sending bytes to clients: shared segments, upstream streams, byte ranges.

Bodies are written chunk by chunk through ``StreamResponse.write``, which waits for the
socket to drain (aiohttp's built-in backpressure), so no response ever holds more than
a chunk plus the transport's buffer for a client. A client that goes away raises out of
``write``; the caller's ``finally`` blocks release whatever they hold.

A cached segment held in a memory file (``proxy/hls/memfile.py``) goes out with ``sendfile(2)``
instead: no copy through Python and nothing parked in the transport's buffer.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import weakref
from collections.abc import Iterator

from aiohttp import hdrs, web

from proxy.errors import NotFound, ProxyError
from proxy.hls.memfile import MemFile
from proxy.hls.segments import SegmentEntry
from proxy.keys import CONFIG_KEY, METRICS_KEY
from proxy.nextpvr.streams import UpstreamStream
from proxy.recordings.ranges import parse_range
from proxy.web.sendfile import cork, send_file

__all__ = ["RELAY_CHUNK", "content_type_for", "etag_matches", "relay_upstream", "send", "send_bytes_range",
           "send_entry"]

log = logging.getLogger("proxy.relay")

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
#: every extension a proxy URL can end in (``proxy.hls.url_mapper.file_name`` keeps only these) has its
#: type here, so the upstream's Content-Type matters only for names without one
_BY_EXTENSION = {
    ".m3u8": PLAYLIST_TYPE,
    ".m3u": PLAYLIST_TYPE,
    ".ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".fmp4": "video/mp4",
    ".cmfv": "video/mp4",
    ".mp4v": "video/mp4",
    ".cmfa": "audio/mp4",
    ".mp4a": "audio/mp4",
    ".cmft": "application/mp4",
    ".eac3": "audio/eac3",
    ".ttml": "application/ttml+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".m4s": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".ac3": "audio/ac3",
    ".ec3": "audio/eac3",
    ".mp3": "audio/mpeg",
    ".vtt": "text/vtt",
    ".webvtt": "text/vtt",
    ".key": "application/octet-stream",
}
#: read size for relayed upstream bodies: asyncio receives up to 256 KiB at a time, and a 64 KiB read
#: of that is a copy (a slice) plus a write, a send() and a timeout each; 256 KiB relayed a 4 MB
#: recording at c=50 ~1.6x faster (benchmarks/README.md, "relay")
RELAY_CHUNK = 256 * 1024
#: what a client whose socket is backed up gets per write: the part of a write the kernel cannot take
#: waits in the transport's buffer, so a slow client holds at most about this much of our memory
SLOW_PIECE = 32 * 1024
#: headers of an upstream stream response worth passing on to the client
_PASS_HEADERS = (hdrs.CONTENT_RANGE, hdrs.ACCEPT_RANGES, hdrs.LAST_MODIFIED, hdrs.ETAG)


#: upstream types passed on for a name whose extension says nothing: media, playlists, captions
#: and keys only. Anything else (``text/html``, scripts, images) would let a hostile or broken
#: upstream serve a page from the proxy's origin, so it becomes application/octet-stream.
_MEDIA_TYPES = frozenset(_BY_EXTENSION.values()) | {
    "application/mp4", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"}
_MEDIA_MAJOR = re.compile(r"(?:video|audio)/[a-z0-9][a-z0-9.+-]{0,63}")


def content_type_for(name: str, upstream: str | None) -> str:
    """The type by file extension, else upstream's when it is a media type (never a page)."""
    ext = posixpath.splitext(name)[1].lower()
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext]
    if upstream:
        main = upstream.split(";", 1)[0].strip().lower()
        if main in _MEDIA_TYPES or _MEDIA_MAJOR.fullmatch(main):
            return main
    return "application/octet-stream"


class _SendGuard:
    """Enforces ``server.send_timeout`` for one response with one timer per period, not one
    ``asyncio.timeout`` per write (that was ~14 % of the event loop serving 200 viewers).

    ``send`` marks when a write started waiting; the timer checks twice per period and aborts
    the connection when the same write has waited longer than the timeout. The timer only runs
    while writes happen, so a finished response leaves nothing behind."""

    __slots__ = ("handle", "loop", "request", "timeout", "waiting_since")

    def __init__(self, request: web.Request, timeout: float) -> None:
        self.request = request
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None
        self.handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.timeout / 2, self._check)

    def _check(self) -> None:
        self.handle = None
        since = self.waiting_since
        if since is None:
            return  # no write pending: the next send() re-arms
        if self.loop.time() - since >= self.timeout:
            log.info("%s: client accepted nothing for %.0fs; disconnecting it", self.request.path[:40],
                     self.timeout)
            if self.request.transport is not None:
                self.request.transport.abort()  # the pending write raises ConnectionResetError
            return
        self.arm()


#: the guard of each response still being written (weak: a finished response takes its guard along)
_GUARDS: weakref.WeakKeyDictionary[web.StreamResponse, _SendGuard] = weakref.WeakKeyDictionary()


async def send(request: web.Request, resp: web.StreamResponse, data: bytes | memoryview) -> None:
    """``resp.write`` with ``server.send_timeout``: a client that stops reading is cut off
    (between one and one and a half timeouts after its last progress) instead of holding its
    handler, connection and buffers forever; the write then raises ``ConnectionResetError``,
    which handlers treat like any client that went away."""
    guard = _GUARDS.get(resp)
    if guard is None:
        guard = _GUARDS[resp] = _SendGuard(request, request.app[CONFIG_KEY].server.send_timeout)
    guard.waiting_since = guard.loop.time()
    guard.arm()
    try:
        await resp.write(data)
    finally:
        guard.waiting_since = None


def _count(request: web.Request, kind: str, size: int) -> None:
    metrics = request.app[METRICS_KEY]
    metrics.sent_bytes.labels(kind).inc(size)


async def send_entry(request: web.Request, entry: SegmentEntry, *, name: str, kind: str,
                     cache_control: str, etag: str | None = None) -> web.StreamResponse:
    """Stream a (possibly still downloading) shared segment; honours Range once it is complete."""
    # before anything can suspend: the memory file (taken: an eviction meanwhile closes it only after
    # this response), or the chunks as they are now (bytes that move to a file later stay readable)
    file = entry.file if request.method != hdrs.METH_HEAD and request.transport is not None else None
    if file is not None and not file.acquire():
        raise NotFound("This segment left the cache; reload the playlist.")
    try:
        return await _send_entry(request, entry, file, name=name, kind=kind, cache_control=cache_control,
                                 etag=etag)
    finally:
        if file is not None:
            file.release()


async def _send_entry(request: web.Request, entry: SegmentEntry, file: MemFile | None, *, name: str, kind: str,
                      cache_control: str, etag: str | None) -> web.StreamResponse:
    chunks = entry.iter_bytes() if file is None else None
    head = await entry.wait_head()
    ctype = content_type_for(name, head.content_type)
    range_header = request.headers.get(hdrs.RANGE)
    if range_header is not None and entry.done and entry.error is None:
        return await send_bytes_range(request, entry.body(), content_type=ctype, kind=kind,
                                      cache_control=cache_control, etag=etag)
    resp = web.StreamResponse(headers={hdrs.CACHE_CONTROL: cache_control, hdrs.ACCEPT_RANGES: "bytes"})
    if etag is not None:
        resp.headers[hdrs.ETAG] = etag
    resp.content_type = ctype
    if file is not None:
        resp.content_length = file.size
    elif head.content_length is not None:
        resp.content_length = head.content_length
    elif entry.done:
        resp.content_length = entry.size
    sock = request.transport.get_extra_info("socket") if file is not None and request.transport else None
    corked = sock is not None and cork(sock, True)
    await resp.prepare(request)
    if file is not None:
        sent = await send_file(request, file, request.app[CONFIG_KEY].server.send_timeout, corked=corked)
        if sent is None:  # the headers still wait in the transport: the bytes go after them, written
            sent = True
            await send(request, resp, file.read())
        if sent:
            _count(request, kind, file.size)
            await resp.write_eof()
        return resp
    if request.method == hdrs.METH_HEAD or chunks is None:
        return resp
    try:
        async for chunk in chunks:
            for piece in _pieces(request.transport, chunk):
                await send(request, resp, piece)
            _count(request, kind, len(chunk))
    except ProxyError as exc:
        return _abort(request, resp, exc)
    await resp.write_eof()
    return resp


def _pieces(transport: asyncio.Transport | None, chunk: bytes) -> Iterator[bytes | memoryview]:
    """``chunk`` in one write while the client keeps up; in SLOW_PIECE slices (views, not copies)
    while its socket is backed up, looked at again before every slice. 200 viewers at 1 Mbit/s held
    ~20 MB more with whole 256 KiB writes (benchmarks/README.md, "slow viewers")."""
    pos = 0
    view: memoryview | None = None
    while pos < len(chunk):
        backed_up = transport is not None and transport.get_write_buffer_size() > 0
        end = min(len(chunk), pos + SLOW_PIECE) if backed_up else len(chunk)
        if pos == 0 and end == len(chunk):
            yield chunk
            return
        if view is None:
            view = memoryview(chunk)
        yield view[pos:end]
        pos = end


def _abort(request: web.Request, resp: web.StreamResponse, exc: ProxyError) -> web.StreamResponse:
    """The body broke after the headers went out: cut the connection so the client sees a
    truncated response (and retries) instead of a short body it would take as complete."""
    log.info("%s: upstream failed mid-body (%s); closing the client connection", request.path[:40],
             exc.message)
    metrics = request.app[METRICS_KEY]
    metrics.errors.labels(exc.reason).inc()
    if request.transport is not None:
        request.transport.abort()
    return resp


async def send_bytes_range(request: web.Request, body: bytes, *, content_type: str, kind: str,
                           cache_control: str, etag: str | None = None) -> web.Response:
    size = len(body)
    wanted = parse_range(request.headers.get(hdrs.RANGE), size)
    headers = {hdrs.CACHE_CONTROL: cache_control, hdrs.ACCEPT_RANGES: "bytes"}
    if etag is not None:
        headers[hdrs.ETAG] = etag
    if wanted is None:
        _count(request, kind, size)
        return web.Response(body=body, content_type=content_type, headers=headers)
    part = body[wanted.start:wanted.end + 1]
    headers[hdrs.CONTENT_RANGE] = wanted.content_range(size)
    _count(request, kind, len(part))
    return web.Response(status=206, body=part, content_type=content_type, headers=headers)


async def relay_upstream(request: web.Request, stream: UpstreamStream, *, kind: str, content_type: str,
                         cache_control: str, content_length: bool = True, accept_ranges: bool = False,
                         watched: str | None = None) -> web.StreamResponse:
    """Relay an open upstream response (status, length, range headers) chunk by chunk.

    ``accept_ranges`` adds ``Accept-Ranges: bytes`` where NextPVR serves ranges without saying
    so; ``watched`` names the stream kind whose upstream and viewer gauges cover the relay.
    """
    async with stream:
        resp = web.StreamResponse(status=stream.status, headers={hdrs.CACHE_CONTROL: cache_control})
        for header in _PASS_HEADERS:
            value = stream.headers.get(header)
            if value is not None:
                resp.headers[header] = value
        if accept_ranges:
            resp.headers.setdefault(hdrs.ACCEPT_RANGES, "bytes")
        if content_length and stream.content_length is not None:
            resp.content_length = stream.content_length
        resp.content_type = content_type
        await resp.prepare(request)
        if request.method == hdrs.METH_HEAD:
            return resp
        metrics = request.app[METRICS_KEY]
        if watched is not None:
            metrics.upstream_streams.labels(watched).inc()
            metrics.viewers.labels(watched).inc()
        try:
            async for chunk in stream.iter_chunks(RELAY_CHUNK):
                await send(request, resp, chunk)
                metrics.sent_bytes.labels(kind).inc(len(chunk))
                metrics.received_bytes.labels(kind).inc(len(chunk))
        except ProxyError as exc:
            return _abort(request, resp, exc)
        finally:
            if watched is not None:
                metrics.upstream_streams.labels(watched).dec()
                metrics.viewers.labels(watched).dec()
        await resp.write_eof()
        return resp


#: validators looked at in one If-None-Match header (bounded work per request)
_MAX_ETAGS = 32


def etag_matches(request: web.Request, *etags: str) -> bool:
    """If-None-Match (weak comparison, RFC 9110 13.1.2) against any of ``etags``."""
    header = request.headers.get(hdrs.IF_NONE_MATCH)
    if not header:
        return False
    wanted = {e.removeprefix("W/") for e in etags}
    for candidate in header.split(",")[:_MAX_ETAGS]:
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") in wanted:
            return True
    return False
