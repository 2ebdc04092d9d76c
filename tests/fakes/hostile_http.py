"""A hostile NextPVR: the project's emulator behind a pass-through that misbehaves on request.

Everything is forwarded to the emulator (so sessions, channels and transcodes are real) except
what a behaviour takes over:

- ``drip_live``: ``/live`` answers 200 ``video/mp2t`` and then sends one byte every
  ``drip_interval`` seconds, forever (sock_read never fires: the silence is never long enough).
- ``html_segments``: transcode playlists name their segments ``.m2ts`` (an MPEG-TS extension
  the proxy keeps), and those segments come back as ``Content-Type: text/html`` (a broken or
  hostile web server).

:attr:`HostileUpstream.open_drips` counts ``/live`` drips still connected, so a test can see the
proxy let go of the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

import aiohttp
from aiohttp import web

__all__ = ["HostileUpstream"]

#: a segment URI of the emulator's transcode playlists: ``.../transcode/<id>/<n>.ts``
_SEGMENT_URI = re.compile(rb"^(\S*?transcode/\d+/\d+)\.ts", re.MULTILINE)
_RENAMED_SEGMENT = re.compile(r"/transcode/\d+/\d+\.m2ts$")
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})


@dataclass
class HostileUpstream:
    emulator_url: str
    drip_live: bool = False
    drip_interval: float = 0.5
    html_segments: bool = False

    def __post_init__(self) -> None:
        self.url = ""
        self.open_drips = 0
        self.html_served = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._http = aiohttp.ClientSession(auto_decompress=False)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.drip_live and request.path == "/live":
            return await self._drip(request)
        path = request.path
        renamed = self.html_segments and _RENAMED_SEGMENT.search(path)
        upstream_path = path.removesuffix(".m2ts") + ".ts" if renamed else path
        return await self._forward(request, upstream_path, html=upstream_path != path)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        await resp.prepare(request)
        self.open_drips += 1
        try:
            while True:
                await resp.write(b"\x47")
                await asyncio.sleep(self.drip_interval)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open_drips -= 1
        return resp

    async def _forward(self, request: web.Request, path: str, *, html: bool) -> web.StreamResponse:
        assert self._http is not None
        url = self.emulator_url + path + (f"?{request.query_string}" if request.query_string else "")
        body = await request.read()
        async with self._http.request(request.method, url, data=body or None, allow_redirects=False,
                                      headers={k: v for k, v in request.headers.items()
                                               if k.lower() not in ("host", *_HOP_HEADERS)}) as upstream:
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            if html:
                headers["Content-Type"] = "text/html; charset=utf-8"
                self.html_served += 1
            if self.html_segments and "mpegurl" in upstream.headers.get("Content-Type", "").lower():
                data = _SEGMENT_URI.sub(rb"\1.m2ts", await upstream.read())
                return web.Response(status=upstream.status, body=data, headers=headers)
            resp = web.StreamResponse(status=upstream.status, headers=headers)
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError):
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            return resp
