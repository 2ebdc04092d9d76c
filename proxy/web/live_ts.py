"""Live TV as MPEG-TS: ``GET /live/{channel_id}.ts`` and the Revenge alias ``GET /live?channel=``.

Every viewer of a channel shares one NextPVR connection (``proxy/ts/fanout.py``). The
handler only moves bytes from the viewer's bounded queue to its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from aiohttp import hdrs, web

from proxy.errors import NextPVRTimeout, NextPVRUnreachable, ProxyError, ServiceUnavailable
from proxy.keys import CHANNELS_KEY, CONFIG_KEY, METRICS_KEY, TS_KEY
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.streams import UpstreamBody
from proxy.ts.fanout import EndReason, Opener
from proxy.web.params import parse_channel_id
from proxy.web.relay import send
from proxy.web.routes import add_route

__all__ = ["live_ts_opener", "serve_live_ts", "setup"]

_HEADERS = {hdrs.CACHE_CONTROL: "no-store", hdrs.CONTENT_TYPE: "video/mp2t"}


def live_ts_opener(client: NextPVRClient, idle_timeout: float) -> Callable[[int], Opener]:
    """Opens ``/live?channeloid=`` with the main session (re-login once when refused)."""

    def opener_for(channel_id: int) -> Opener:
        async def open_stream() -> UpstreamBody:
            return await client.open_session_stream(
                lambda sid, client_id: client.live_stream_url(channel_id, sid, client_id),
                read_timeout=idle_timeout)
        return open_stream

    return opener_for


def limit_send_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """Cap the kernel's send buffer so a stalled viewer shows up in our own queue (and is
    disconnected) instead of parking megabytes in kernel memory."""
    sock = transport.get_extra_info("socket")
    if size and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def serve_live_ts(request: web.Request, channel_id: int) -> web.StreamResponse:
    await request.app[CHANNELS_KEY].get(channel_id)
    stream, viewer = await request.app[TS_KEY].join(channel_id)
    metrics = request.app[METRICS_KEY]
    transport = request.transport
    if transport is not None:
        viewer.abort = transport.abort
        limit_send_buffer(transport, request.app[CONFIG_KEY].ts.socket_send_buffer)
    try:
        resp = web.StreamResponse(headers=_HEADERS)
        if request.method == hdrs.METH_HEAD:
            await resp.prepare(request)
            return resp
        # the status waits for the first bytes: a stream that ends (or never starts) before any
        # video gets a clear error instead of a 200 with an empty body
        data = await viewer.next()
        if data is None:
            raise _no_video(viewer.ended)
        await resp.prepare(request)
        while data is not None:
            await send(request, resp, data)
            metrics.sent_bytes.labels("ts").inc(len(data))
            data = await viewer.next()
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp
    finally:
        stream.remove_viewer(viewer)


def _no_video(reason: EndReason | None) -> ProxyError:
    if reason is EndReason.UPSTREAM_IDLE:
        return NextPVRTimeout("NextPVR sent no video for this channel in time")
    if reason is EndReason.SHUTDOWN:
        return ServiceUnavailable("the proxy is shutting down")
    return NextPVRUnreachable("the stream from NextPVR ended before any video arrived")


async def live_ts(request: web.Request) -> web.StreamResponse:
    if "channel_id" in request.match_info:
        channel_id = parse_channel_id(request.match_info["channel_id"], "channel_id")
    else:
        channel_id = parse_channel_id(request.query.get("channel"))
    return await serve_live_ts(request, channel_id)


def setup(app: web.Application) -> None:
    add_route(app, hdrs.METH_GET, "/live/{channel_id}.ts", live_ts, kind="ts")
    add_route(app, hdrs.METH_GET, "/live", live_ts, kind="ts")
