"""A hostile NextPVR stand-in: the session protocol of :class:`FakeNextPVR`, one live channel,
and a transcoder that misbehaves on demand (issue 11, section 4).

It keeps the books a test needs to prove that nothing was left behind: which sessions hold a
running transcode (``running``: a tuner in use), how many ``channel.transcode.stop`` calls
arrived and how many playlist fetches are still open. Behaviours, each off by default:

- ``initiate_gate``: ``channel.transcode.initiate`` waits for this event (a slow tuner);
- ``playlist_faults``: the next playlist fetches answer ``"code8"`` (the session is forgotten,
  as after a NextPVR restart) or ``"404"`` (the transcode is gone), one entry per fetch;
- ``drip_interval``: playlists are sent one byte every so many seconds (a slow drip);
- ``playlist``: the playlist bytes to serve instead of the generated live playlist (huge ones);
- ``child_faults``: the same as ``playlist_faults`` for the child playlist of a multivariant one;
- ``drip_methods``: API methods whose answers are dripped like playlists (``drip_interval``).

Request lines carry sids: start its server with ``access_log=None``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.nextpvr_fake import FakeNextPVR, FakeRequest, fail, ok, xml

__all__ = ["CHANNEL", "HostileNextPVR", "live_playlist"]

CHANNEL = 7181
SEGMENT = b"\x47" + b"\xff" * 187


def live_playlist(first: int, count: int = 3, *, target: int = 2) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for seq in range(first, first + count):
        lines += [f"#EXTINF:{target}.0,", f"seg_{seq}.ts"]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class HostileNextPVR(FakeNextPVR):
    initiate_gate: asyncio.Event | None = None
    playlist_faults: list[str] = field(default_factory=list)
    child_faults: list[str] = field(default_factory=list)
    drip_interval: float | None = None
    drip_methods: set[str] = field(default_factory=set)
    playlist: bytes | None = None
    #: sessions whose transcode runs (a tuner each)
    running: set[str] = field(default_factory=set)
    stops: int = 0
    initiates_sent: int = 0
    playlist_fetches: int = 0
    open_fetches: int = 0
    #: media sequence of the generated live playlist (advanced by the test)
    sequence: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        self.on("channel.list", self._channels)
        self.on("channel.transcode.initiate", self._initiate_transcode)
        self.on("channel.transcode.status", self._status)
        self.on("channel.transcode.m3u8", self._m3u8)
        self.on("channel.transcode.stop", self._stop)
        self.on("channel.transcode.lease", self._lease)
        self.on("system.status", self._ok)
        self.on("channel.listings", self._listings)
        for seq in range(1000):
            self.on_path(f"/seg_{seq}.ts", self._segment)
        self.on_path("/child.m3u8", self._child)

    # -- the transcoder -----------------------------------------------------------
    async def _channels(self, req: FakeRequest) -> web.StreamResponse:
        return xml(f"<channels><channel><id>{CHANNEL}</id><name>Hostile</name><number>4</number>"
                   "<minor>1</minor><type>0x1</type></channel></channels>")

    async def _listings(self, req: FakeRequest) -> web.StreamResponse:
        return xml("<listings></listings>")

    async def _ok(self, req: FakeRequest) -> web.StreamResponse:
        return ok(req)

    async def _initiate_transcode(self, req: FakeRequest) -> web.StreamResponse:
        self.initiates_sent += 1
        await self._notify()
        if self.initiate_gate is not None:
            await self.initiate_gate.wait()
        assert req.sid is not None
        self.running.add(req.sid)  # force=true: one transcode per session, replaced
        await self._notify()
        return ok(req)

    async def _status(self, req: FakeRequest) -> web.StreamResponse:
        answer = xml("<percentage>100</percentage><final>true</final>")
        if req.method in self.drip_methods:
            assert isinstance(answer.body, bytes)
            return await self._send(req.request, answer.body)
        return answer

    async def _stop(self, req: FakeRequest) -> web.StreamResponse:
        self.stops += 1
        self.running.discard(req.sid or "")
        return ok(req)

    async def _lease(self, req: FakeRequest) -> web.StreamResponse:
        return ok(req) if req.sid in self.running else fail(req, 5, "no transcode")

    async def _m3u8(self, req: FakeRequest) -> web.StreamResponse:
        self.playlist_fetches += 1
        if self.playlist_faults:
            return self._fault(req, self.playlist_faults.pop(0))
        if req.sid not in self.running:
            return web.Response(status=404, text="no transcode")
        body = self.playlist if self.playlist is not None else live_playlist(self.sequence)
        return await self._send(req.request, body)

    async def _child(self, request: web.Request) -> web.StreamResponse:
        if self.child_faults:
            fault = self.child_faults.pop(0)
            if fault == "404":
                return web.Response(status=404, text="gone")
            return web.Response(text='<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="fail">'
                                '<err code="8" msg="Not logged in" /></rsp>', content_type="text/xml")
        return await self._send(request, live_playlist(self.sequence))

    def _fault(self, req: FakeRequest, fault: str) -> web.Response:
        if fault == "404":
            self.running.discard(req.sid or "")
            return web.Response(status=404, text="no transcode")
        assert fault == "code8", fault
        # NextPVR restarted: the session and its transcode are gone
        self.running.discard(req.sid or "")
        self._sessions.pop(req.sid or "", None)
        return fail(req, 8, self.code8_msg)

    async def _send(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if self.drip_interval is None:
            return web.Response(body=body, content_type="application/x-mpegURL")
        resp = web.StreamResponse(headers={"Content-Type": "application/x-mpegURL"})
        self.open_fetches += 1
        try:
            await resp.prepare(request)
            for i in range(len(body)):
                await resp.write(body[i:i + 1])
                await asyncio.sleep(self.drip_interval)
            await resp.write_eof()
        finally:
            self.open_fetches -= 1
            await self._notify()
        return resp

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=SEGMENT * 8, content_type="video/mp2t")
