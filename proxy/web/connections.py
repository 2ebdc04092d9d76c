"""Limits at the socket, below HTTP: a deadline for a request's headers and a bound on open connections.

aiohttp by itself keeps a connection that never completes its request headers for its keep-alive
timeout (an hour by default), and the request limit (``server.max_clients``,
``web/middleware.py``) only sees requests, so ten slowloris clients held ten sockets for minutes and
any number of idle keep-alive connections were allowed. Here:

- ``server.header_timeout``: a connection whose first request head (request line and headers) is
  not complete this long after it opened is dropped. Later requests on a kept-alive connection are
  bounded by aiohttp's keep-alive timer (``server.keepalive_timeout``), which runs from the end of
  the previous response and is not reset by a trickle of header bytes.
- ``server.max_connections``: open connections, idle ones included. One more gets a plain 503 and
  is closed at once, before any of its bytes are parsed.

:class:`GuardedSite` is a ``TCPSite`` whose protocol factory wraps aiohttp's request handler in a
:class:`_Guarded` protocol that forwards every callback to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

__all__ = ["ConnectionGuard", "GuardedSite"]

log = logging.getLogger("proxy.web")

#: what a connection over the bound gets before it is closed (no request was read: keep it minimal)
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n"
            b"Retry-After: 5\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
            b"too many connections; try again shortly\n")
#: the end of a request head; a head split across reads is found through the kept tail
_HEAD_END = b"\r\n\r\n"
#: refusals are logged at most this often (a flood would otherwise flood the log too)
_LOG_EVERY = 60.0


class ConnectionGuard:
    """The open-connection count and the header deadline shared by every connection of a site."""

    def __init__(self, *, header_timeout: float, max_connections: int) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.open = 0
        #: connections refused for the bound and dropped for the header deadline, over the site's life
        self.refused = 0
        self.header_timeouts = 0
        self._logged_at = -_LOG_EVERY

    def _note(self, what: str) -> None:
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY:
            self._logged_at = now
            log.warning("%s (refused so far: %d over the bound, %d header timeouts)", what, self.refused,
                        self.header_timeouts)


class _Guarded(asyncio.Protocol):
    """aiohttp's request handler, with the header deadline and the connection count around it."""

    __slots__ = ("_admitted", "_deadline", "_guard", "_inner", "_tail", "_transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        guard = self._guard
        self._transport = transport
        if guard.open >= guard.max_connections:
            guard.refused += 1
            guard._note(f"{guard.open} connections open, the most server.max_connections allows; "
                        "refusing new ones")
            transport.write(_REFUSAL)
            transport.close()  # after the refusal is flushed; aiohttp never sees this connection
            return
        self._admitted = True
        guard.open += 1
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(guard.header_timeout, self._headers_late)
        self._inner.connection_made(transport)

    def _headers_late(self) -> None:
        self._deadline = None
        self._guard.header_timeouts += 1
        self._guard._note(f"a client sent no complete request head in {self._guard.header_timeout:.0f}s; "
                          "dropping it")
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._deadline is not None:
            seen = self._tail + data
            if _HEAD_END in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = seen[-(len(_HEAD_END) - 1):]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._guard.open -= 1
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (TCPSite.start would too)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        guard = self.guard
        self._server = await loop.create_server(
            lambda: _Guarded(guard, server()), self._host, self._port,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port, backlog=self._backlog)
