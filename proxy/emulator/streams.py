"""Media endpoints: ``/live`` (channels, timeshift, recordings), ``/stream`` and transcode segments.

A channel stream is segment k, k+1, ... of the channel back to back, paced at real time, without a
Content-Length; it holds a tuner until the client goes away or stops reading for ``live_expiry``.
Recordings are files with Range support, or growing bodies while they are still being recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from proxy.emulator.call import stream_sid
from proxy.emulator.connections import abortable, nap, reset_connection
from proxy.emulator.data import Channel, channel_by_number, channel_by_oid
from proxy.emulator.feeds import SegmentedFile
from proxy.emulator.hls import segment_bytes
from proxy.emulator.recordings import Recording
from proxy.emulator.state import STATE_KEY, EmulatorState, LiveHandle, Timeshift

__all__ = ["live", "parse_range", "send_segment", "stream_file", "transcode_segment"]

NO_TUNER = "No tuner was available for the requested channel."
TS = "video/mp2t"
#: how often a slow (faulted) segment trickles
SLOW_TICK = 0.05
#: a paced /live writer looks at least this often whether its client hung up
DISCONNECT_CHECK = 0.2


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


def _stream_auth_failed(state: EmulatorState, request: web.Request) -> bool:
    session = state.session(stream_sid(request.query))
    return session is None and state.config.require_sid_for_streams


# -- transcode segments ------------------------------------------------------------------------------
async def send_segment(request: web.Request, state: EmulatorState, body: bytes) -> web.StreamResponse:
    faults = state.faults
    reset, slow = faults.take_reset(), faults.take_slow()
    if not reset and slow is None:
        return web.Response(body=body, content_type=TS)
    resp = web.StreamResponse(headers={"Content-Type": TS})
    resp.content_length = len(body)
    with abortable(state, request) as aborted, contextlib.suppress(ConnectionError):
        if slow is not None and await nap(aborted, slow.delay):
            return resp
        await resp.prepare(request)
        if reset:
            await resp.write(body[: len(body) // 2])
            reset_connection(request)()
            return resp
        assert slow is not None
        step = len(body) if slow.bytes_per_second is None else max(1, int(slow.bytes_per_second * SLOW_TICK))
        for offset in range(0, len(body), step):
            if offset and await nap(aborted, SLOW_TICK):
                return resp
            await resp.write(body[offset : offset + step])
        await resp.write_eof()
    return resp


async def transcode_segment(request: web.Request) -> web.StreamResponse:
    """``/transcode/{transcode}/{n}.ts?sid=``, what relative and absolute segment URIs point at."""
    state = request.app[STATE_KEY]
    state.counters.segment_requests += 1
    if state.faults.take_500("segment"):
        return _text(500, "Internal Server Error")
    try:
        transcode_id, n = int(request.match_info["transcode"]), int(request.match_info["n"])
    except ValueError:
        return _text(404, "Not Found")
    body = segment_bytes(state, request.query.get("sid"), transcode_id, n)
    if body is None:
        return _text(404, "Not Found")
    return await send_segment(request, state, body)


# -- /live ---------------------------------------------------------------------------------------------
def _channel(q: Mapping[str, str]) -> Channel | None:
    for name in ("channeloid", "channel_id"):
        if q.get(name):
            try:
                return channel_by_oid(int(q[name]))
            except ValueError:
                return None
    return channel_by_number(q["channel"]) if q.get("channel") else None


async def live(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if "recording" in request.query:
        return await _recording(request, state, request.query.get("recording", ""))
    if state.faults.take_500("live") or _stream_auth_failed(state, request):
        return _text(500, "Internal Server Error")
    channel = _channel(request.query)
    if channel is None:
        return _text(404, "Channel not found")
    if request.method == "HEAD":  # headers only; no tuner is tuned for a HEAD
        return web.Response(headers={"Content-Type": TS})
    sid = stream_sid(request.query)
    shift = state.timeshifts.get(sid or "")
    if shift is not None and shift.channel.oid == channel.oid:
        return await _timeshift(request, state, shift)
    lease = state.acquire_tuner(channel, share=state.config.share_tuners)
    if lease is None:
        return _text(404, NO_TUNER)
    handle = LiveHandle(state.next_id(), channel, lease, time.monotonic(), reset_connection(request), sid=sid)
    state.live[handle.id] = handle
    state.counters.live_opened += 1
    state.changed()
    try:
        return await _pump_channel(request, state, handle)
    finally:
        state.close_live(handle)


async def _pump_channel(request: web.Request, state: EmulatorState, handle: LiveHandle) -> web.StreamResponse:
    cfg, feeds, channel = state.config, state.feeds, handle.channel
    resp = web.StreamResponse(headers={"Content-Type": TS, "Cache-Control": "no-cache"})
    await resp.prepare(request)
    transport = request.transport
    if transport is None:
        return resp
    # small buffers, so a reader that stops is noticed after seconds of media, not minutes
    transport.set_write_buffer_limits(high=cfg.write_chunk)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.live_send_buffer)
    loop = asyncio.get_running_loop()
    index = feeds.index_at(channel)
    with contextlib.suppress(ConnectionError):
        while handle.is_open():
            data = memoryview(feeds.segment(channel, index))
            airs, duration = feeds.airs_at(channel, index), feeds.duration(channel)
            for offset in range(0, len(data), cfg.write_chunk):
                if cfg.realtime:
                    await _pace(handle, transport, airs + duration * offset / len(data))
                await _stalled(state, handle, transport)
                if not handle.is_open() or transport.is_closing():
                    return resp
                try:
                    async with asyncio.timeout(cfg.live_expiry) as timer:
                        handle.renew = _renewer(timer, loop, cfg.live_expiry)
                        await resp.write(data[offset : offset + cfg.write_chunk])
                except TimeoutError:
                    state.close_live(handle, expired=True)
                    return resp
                finally:
                    handle.renew = None
            index += 1
    return resp


async def _stalled(state: EmulatorState, handle: LiveHandle, transport: asyncio.BaseTransport) -> None:
    """Send nothing while the stall fault lasts (it can be extended meanwhile)."""
    while (left := state.faults.stall_remaining()) > 0 and handle.is_open() and not transport.is_closing():
        await nap(handle.wake, min(left, DISCONNECT_CHECK))


async def _pace(handle: LiveHandle, transport: asyncio.BaseTransport, due: float) -> None:
    """Wait until ``due`` (monotonic), in slices, so a client that hung up frees its tuner soon."""
    while handle.is_open() and not transport.is_closing():
        left = due - time.monotonic()
        if left <= 0:
            return
        await nap(handle.wake, min(left, DISCONNECT_CHECK))


def _renewer(timer: asyncio.Timeout, loop: asyncio.AbstractEventLoop, expiry: float) -> Callable[[], None]:
    """What a lease calls to push back the expiry of a write that is waiting for the reader."""

    def renew() -> None:
        timer.reschedule(loop.time() + expiry)

    return renew


async def _timeshift(request: web.Request, state: EmulatorState, shift: Timeshift) -> web.StreamResponse:
    """A /live read of the session's timeshift buffer, from ``seek=<byte>-`` if given."""
    start = 0
    seek = request.query.get("seek", "").rstrip("-")
    if seek.isdigit():
        start = int(seek)
    shift.last_renewal = time.monotonic()

    def available() -> int | None:
        if state.timeshifts.get(shift.sid) is not shift:
            return None
        shift.last_renewal = time.monotonic()
        return shift.segments(state.feeds, state.config.timeshift_max_seconds, time.monotonic())

    def next_at(segments: int) -> float:
        return shift.started_at + segments * state.feeds.duration(shift.channel) - time.monotonic()

    return await _grow(request, state, shift.file, start, None, available, next_at, owner=shift.readers)


# -- recordings ------------------------------------------------------------------------------------------
def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """``(start, end_exclusive)``; None to send the whole file; False when unsatisfiable (416)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep:
        return None
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0:
                return False
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return False
    if end <= start:
        return None
    return start, min(end, size)


async def stream_file(request: web.Request) -> web.StreamResponse:
    """``/stream?f=<server path>``: here, only recording files exist on the emulated disk."""
    state = request.app[STATE_KEY]
    path = request.query.get("f", "")
    rec = next((r for r in state.store.recordings.values() if r.file == path), None)
    return await _recording(request, state, str(rec.id) if rec else "")


async def _recording(request: web.Request, state: EmulatorState, rec_id: str) -> web.StreamResponse:
    state.counters.recording_stream_requests += 1
    if state.faults.take_500("recording") or _stream_auth_failed(state, request):
        return _text(500, "Internal Server Error")
    rec = state.store.recordings.get(int(rec_id)) if rec_id.isdigit() else None
    now = time.time()
    if rec is None or not rec.has_media(now):
        return _text(404, "Not Found")
    file = state.recording_file(rec)
    available, _ = state.recording_segments(rec, now)
    growing = request.query.get("growing", "").lower() == "true" or rec.status(now) == "recording"
    size = file.size(available)
    wanted = parse_range(request.headers.get("Range"), size)
    if wanted is False:
        return web.Response(
            status=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}
        )
    if growing:
        start = wanted[0] if isinstance(wanted, tuple) else 0
        return await _grow(
            request,
            state,
            file,
            start,
            size if wanted else None,
            _recording_progress(state, rec),
            _recording_next(state, rec),
        )
    start, end = wanted if isinstance(wanted, tuple) else (0, size)
    resp = web.StreamResponse(
        status=206 if wanted else 200, headers={"Content-Type": TS, "Accept-Ranges": "bytes"}
    )
    if wanted:
        resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    resp.content_length = end - start
    with abortable(state, request), contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        if request.method != "HEAD":
            for chunk in file.read(start, end, available, state.config.write_chunk):
                await resp.write(chunk)
        await resp.write_eof()
    return resp


def _recording_progress(state: EmulatorState, rec: Recording) -> Callable[[], int | None]:
    def available() -> int | None:
        if state.store.recordings.get(rec.id) is not rec:
            return None
        return state.recording_segments(rec, time.time())[0]

    return available


def _recording_next(state: EmulatorState, rec: Recording) -> Callable[[int], float]:
    def next_at(segments: int) -> float:
        if rec.status(time.time()) != "recording":
            return -1.0
        return rec.capture_start + (segments + 1) * state.feeds.duration(rec.channel) - time.time()

    return next_at


async def _grow(
    request: web.Request,
    state: EmulatorState,
    file: SegmentedFile,
    start: int,
    known_size: int | None,
    available: Callable[[], int | None],
    next_at: Callable[[int], float],
    owner: dict[int, Callable[[], None]] | None = None,
) -> web.StreamResponse:
    """A body with no Content-Length that keeps sending what is appended to ``file``.

    ``available()`` says how many segments exist now (None: the file is gone); ``next_at(n)`` how
    long until segment n+1 exists (negative: nothing more will come).
    """
    resp = web.StreamResponse(
        status=206 if known_size is not None else 200, headers={"Content-Type": TS, "Accept-Ranges": "bytes"}
    )
    if known_size is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{max(start, known_size - 1)}/*"
    with abortable(state, request, owner) as aborted, contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        if request.method == "HEAD":
            await resp.write_eof()
            return resp
        position = start
        while (segments := available()) is not None:
            for chunk in file.read(position, file.size(segments), segments, state.config.write_chunk):
                await resp.write(chunk)
                position += len(chunk)
            wait = next_at(segments)
            if wait < 0 and available() == segments:
                break
            if await nap(aborted, min(max(wait, 0.01), 1.0)):
                return resp
        await resp.write_eof()
    return resp
