"""A small, scriptable, fail-loud NextPVR for the client's protocol-edge tests.

It implements only the session protocol itself (``session.initiate``/``login``/
``logout`` with the real salted hash, code 8 for unknown sids). Every other method and
path must be scripted by the test with :meth:`FakeNextPVR.on`; anything unscripted is
recorded in :attr:`FakeNextPVR.unexpected` (tests assert it stays empty) and answered
with status 599 so the client cannot mistake it for a real answer.

The full emulator lives in ``proxy/emulator``; this fake exists to produce the odd and
broken answers the emulator has no reason to produce.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

RESOURCES = Path(__file__).parent.parent / "resources" / "nextpvr"

Format = Literal["xml", "json"]
Handler = Callable[["FakeRequest"], Awaitable[web.StreamResponse]]
PathHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

XML_DECL = '<?xml version="1.0" encoding="utf-8" ?>\n'


@dataclass
class FakeRequest:
    request: web.Request
    method: str
    fmt: Format
    sid: str | None
    params: dict[str, str]


@dataclass
class Call:
    method: str
    sid: str | None
    params: dict[str, str]
    raw_query: str


@dataclass
class _Session:
    salt: str
    authed: bool = False


def xml(body: str, *, stat: str = "ok") -> web.Response:
    return web.Response(text=f'{XML_DECL}<rsp stat="{stat}">{body}</rsp>', content_type="text/xml")


def xml_fail(code: int, msg: str, *, stat: str = "fail") -> web.Response:
    return xml(f'<err code="{code}" msg="{msg}" />', stat=stat)


def json_body(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json")


def fail(req: FakeRequest, code: int, msg: str, *, stat: str = "fail") -> web.Response:
    if req.fmt == "json":
        return json_body(f'{{"stat":"{stat}","code":{code},"msg":"{msg}"}}')
    return xml_fail(code, msg, stat=stat)


def ok(req: FakeRequest) -> web.Response:
    return json_body('{"stat":"ok"}') if req.fmt == "json" else xml("")


def resource(name: str) -> Handler:
    """Serve ``tests/resources/nextpvr/<name>.<xml|json>`` in the format asked for."""

    async def handler(req: FakeRequest) -> web.StreamResponse:
        data = (RESOURCES / f"{name}.{req.fmt}").read_bytes()
        ctype = "application/json" if req.fmt == "json" else "text/xml"
        return web.Response(body=data, content_type=ctype)

    return handler


def raw(body: bytes, content_type: str = "text/xml", status: int = 200) -> Handler:
    async def handler(req: FakeRequest) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type=content_type)

    return handler


@dataclass
class FakeNextPVR:
    pin: str = "0000"
    code8_msg: str = "Not logged in"
    calls: list[Call] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    issued_sids: list[str] = field(default_factory=list)
    logouts: list[str] = field(default_factory=list)
    initiates: int = 0
    logins: int = 0
    failed_logins: int = 0
    #: when set, session.login waits for it (to pile up concurrent callers)
    login_gate: asyncio.Event | None = None
    #: set by tests that park handlers forever; released at teardown
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._handlers: dict[str, Handler] = {}
        self._paths: dict[str, PathHandler] = {}
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_get("/service", self._service)
        self.app.router.add_route("*", "/{tail:.*}", self._path)

    # -- scripting -------------------------------------------------------------
    def on(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    def on_path(self, path: str, handler: PathHandler) -> None:
        self._paths[path] = handler

    def expire_all(self) -> None:
        """Forget every session, as a NextPVR restart does."""
        self._sessions.clear()

    def valid(self, sid: str) -> bool:
        s = self._sessions.get(sid)
        return s is not None and s.authed

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- HTTP ------------------------------------------------------------------
    async def _path(self, request: web.Request) -> web.StreamResponse:
        handler = self._paths.get(request.path)
        if handler is None:
            self.unexpected.append(f"{request.method} {request.path}")
            return web.Response(status=599, text="unexpected request")
        try:
            return await handler(request)
        finally:
            await self._notify()

    async def _service(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        method = q.get("method", "")
        sid = q.get("sid")
        params = {k: v for k, v in q.items() if k not in ("method", "sid", "format")}
        fmt: Format = "json" if q.get("format") == "json" else "xml"
        self.calls.append(Call(method, sid, params, request.raw_path.partition("?")[2]))
        req = FakeRequest(request, method, fmt, sid, params)
        try:
            return await self._dispatch(req)
        finally:
            await self._notify()

    async def _dispatch(self, req: FakeRequest) -> web.StreamResponse:
        if req.method == "session.initiate":
            return self._initiate(req)
        if req.method == "session.login":
            return await self._login(req)
        if req.method == "session.logout":
            if req.sid is not None and self._sessions.pop(req.sid, None) is not None:
                self.logouts.append(req.sid)
            return ok(req)
        handler = self._handlers.get(req.method)
        if handler is None:
            self.unexpected.append(f"method {req.method}")
            return web.Response(status=599, text="unexpected method")
        if req.sid is None or not self.valid(req.sid):
            return fail(req, 8, self.code8_msg)
        return await handler(req)

    def _initiate(self, req: FakeRequest) -> web.Response:
        if req.params.get("ver") != "1.0" or not req.params.get("device"):
            self.unexpected.append("session.initiate without ver/device")
        self.initiates += 1
        sid = uuid.uuid4().hex
        salt = str(uuid.uuid4())
        self._sessions[sid] = _Session(salt)
        self.issued_sids.append(sid)
        if req.fmt == "json":
            return json_body(f'{{"sid":"{sid}","salt":"{salt}","stat":"ok"}}')
        return xml(f"<sid>{sid}</sid><salt>{salt}</salt>")

    async def _login(self, req: FakeRequest) -> web.Response:
        if self.login_gate is not None:
            await self.login_gate.wait()
        session = self._sessions.get(req.sid or "")
        inner = hashlib.md5(self.pin.encode()).hexdigest().lower()
        if session is not None:
            expected = hashlib.md5(f":{inner}:{session.salt}".encode()).hexdigest()
            if req.params.get("md5", "").lower() == expected:
                session.authed = True
                self.logins += 1
                if req.fmt == "json":
                    return json_body(f'{{"stat":"ok","sid":"{req.sid}"}}')
                return xml(f"<sid>{req.sid}</sid>")
        self.failed_logins += 1
        return fail(req, 1, "Login Failed")
