"""NextPVRTransport: HTTP to one NextPVR server: ``/service`` calls with the sid, stream opening.

This module and :mod:`proxy.nextpvr.streams` (which opens streams and reads bodies for
it) are the only places where aiohttp client exceptions and timeouts are caught. They
leave them as :mod:`proxy.errors` exceptions, chained with ``from``:

- connection refused, reset, DNS, broken body     -> :class:`NextPVRUnreachable`
- connect or read timeout, API total timeout       -> :class:`NextPVRTimeout`
- malformed or oddly shaped answer                 -> :class:`NextPVRUnparseable`
- a non-ok answer or an unexpected HTTP status     -> :class:`NextPVRFailed` (with the code)
- code 8 twice in a row                            -> :class:`SessionExpired`

Messages name the API method, never the URL, the sid or the PIN.

API calls carry a total timeout (``timeouts.api_total``); streams never do, only
``sock_connect`` and ``sock_read``, because a live stream or a long recording may run
for hours. Upstream URLs are built already encoded (``URL(..., encoded=True)``) so the
query bytes reach NextPVR exactly as written; the app's ``ClientSession`` should be
created with ``requote_redirect_url=False`` for the same reason.

The typed API methods built on it are :class:`~proxy.nextpvr.client.NextPVRClient`'s.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import quote

import aiohttp
from aiohttp import hdrs
from yarl import URL

from proxy.config import NextPVRConfig
from proxy.errors import (
    NextPVRError,
    NextPVRFailed,
    NextPVRTimeout,
    NextPVRUnparseable,
    NextPVRUnreachable,
    SessionExpired,
    UpstreamTooLarge,
)
from proxy.log import register_secret
from proxy.nextpvr.envelope import Envelope, is_session_error, parse_envelope, safe_message
from proxy.nextpvr.session import NextPVRSession, SessionPool, SidHistory
from proxy.nextpvr.streams import UpstreamStream, open_stream, read_limited

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "OUTCOMES",
    "ClientObserver",
    "NextPVRTransport",
    "ParamValue",
]

#: every ``outcome`` label :meth:`ClientObserver.on_api_call` can receive
OUTCOMES = ("ok", "code8", "failed", "unreachable", "timeout", "unparseable")

ParamValue = str | int | float | bool

#: an API answer larger than this is refused; a whole EPG for one channel is a few MB
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


class ClientObserver(Protocol):
    """What the client reports for metrics (implemented by ``proxy.metrics.Metrics``)."""

    def on_api_call(self, method: str, outcome: str, seconds: float) -> None: ...

    def on_login(self, relogin: bool, ok: bool) -> None: ...


class _HTTPStatusError(NextPVRFailed):
    """An API call answered with a non-2xx status (callers see a NextPVRFailed)."""

    def __init__(self, method: str, status: int) -> None:
        super().__init__(f"NextPVR answered {method} with HTTP {status}")
        self.http_status = status


@dataclass(frozen=True, slots=True)
class _Raw:
    status: int
    content_type: str
    body: bytes


def _param(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _query(pairs: Mapping[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs.items())


def _outcome(exc: NextPVRError) -> str:
    if isinstance(exc, NextPVRTimeout):
        return "timeout"
    if isinstance(exc, NextPVRUnparseable | UpstreamTooLarge):
        return "unparseable"
    if isinstance(exc, NextPVRUnreachable):
        return "unreachable"
    return "failed"


class NextPVRTransport:
    """The calls and streams of one NextPVR server over the app's shared ``ClientSession``: the
    main session and the pool, code-8 re-login, timeouts, error translation (the typed API
    methods are :class:`~proxy.nextpvr.client.NextPVRClient`'s, a subclass)."""

    def __init__(
        self,
        config: NextPVRConfig,
        http: aiohttp.ClientSession,
        *,
        observer: ClientObserver | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._config = config
        self._http = http
        self._observer = observer
        self._max_body = max_body_bytes
        base = URL(config.base_url)
        self._base = str(base.with_query(None).with_fragment(None)).rstrip("/")
        t = config.timeouts
        self._api_timeout = aiohttp.ClientTimeout(total=t.api_total, sock_connect=t.connect, sock_read=t.read)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.read)
        self._session_numbers = itertools.count(1)
        self._client_numbers = itertools.count(1)
        register_secret(config.pin)
        #: sessions for transcodes (one each); the main session counts against max_sessions
        self.pool = SessionPool(
            self._new_session,
            max_sessions=max(1, config.max_sessions - 1),
            idle_sessions=config.idle_sessions,
            idle_ttl=config.idle_session_ttl,
            # 4 logins per pooled session: enough for the recent re-logins of every transcode
            history=SidHistory(limit=max(64, 4 * config.max_sessions)),
        )
        #: the session API calls use
        self.session = self._new_session()

    def _new_session(self) -> NextPVRSession:
        return NextPVRSession(
            self,
            self._config.pin,
            number=next(self._session_numbers),
            device=self._config.client_name,
            on_login=self._observer.on_login if self._observer is not None else None,
            history=self.pool.history,
        )

    def new_client_id(self) -> str:
        """A fresh ``client=`` value for a stream URL: ``<client_name>-<n>``."""
        return f"{self._config.client_name}-{next(self._client_numbers)}"

    # -- raw HTTP ---------------------------------------------------------------
    def _service_url(
        self, method: str, params: Mapping[str, str], sid: str | None, fmt: Literal["xml", "json"] | None
    ) -> URL:
        pairs = {"method": method, **params}
        if sid is not None:
            pairs["sid"] = sid
        if fmt == "json":
            pairs["format"] = "json"
        return URL(f"{self._base}/service?{_query(pairs)}", encoded=True)

    async def _fetch(self, url: URL, method: str, max_bytes: int) -> _Raw:
        try:
            async with self._http.get(url, timeout=self._api_timeout, allow_redirects=False) as resp:
                ok = 200 <= resp.status < 300
                body = await read_limited(resp, max_bytes, what=method) if ok else b""
                return _Raw(resp.status, resp.headers.get(hdrs.CONTENT_TYPE, ""), body)
        except TimeoutError as exc:
            raise NextPVRTimeout(f"NextPVR did not answer {method} in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise NextPVRUnreachable(f"could not reach NextPVR for {method} ({type(exc).__name__})") from exc

    def _observe(self, method: str, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer.on_api_call(method, outcome, time.monotonic() - started)

    async def _attempt(
        self, method: str, params: Mapping[str, str], sid: str | None, fmt: Literal["xml", "json"]
    ) -> Envelope:
        started = time.monotonic()
        try:
            raw = await self._fetch(self._service_url(method, params, sid, fmt), method, self._max_body)
            if not 200 <= raw.status < 300:
                raise _HTTPStatusError(method, raw.status)
            env = parse_envelope(raw.body, method)
        except NextPVRError as exc:
            self._observe(method, _outcome(exc), started)
            raise
        outcome = "ok" if env.ok else "code8" if is_session_error(env) else "failed"
        self._observe(method, outcome, started)
        return env

    async def session_call(self, method: str, params: Mapping[str, str], sid: str | None) -> Envelope:
        """One round trip without re-login (the sessions' transport; not for general use)."""
        return await self._attempt(method, params, sid, self._config.response_format)

    # -- API calls --------------------------------------------------------------
    async def call(
        self,
        method: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        session: NextPVRSession | None = None,
        fmt: Literal["xml", "json"] | None = None,
        relogin: bool = True,
    ) -> Envelope:
        """``GET /service?method=...`` with the session's sid; a successful envelope or an error.

        Code 8 makes the session log in again (shared with every concurrent caller that
        saw the same sid) and the call is retried once; code 8 again is SessionExpired.
        """
        sess = session if session is not None else self.session
        query = {k: _param(v) for k, v in (params or {}).items()}
        answer_format = fmt if fmt is not None else self._config.response_format
        sid = await sess.sid()
        env = await self._attempt(method, query, sid, answer_format)
        if relogin and is_session_error(env):
            sid = await sess.relogin(sid)
            env = await self._attempt(method, query, sid, answer_format)
            if is_session_error(env):
                raise SessionExpired(f"NextPVR refused a fresh session for {method} (code 8 twice)")
        if not env.ok:
            if is_session_error(env):
                raise SessionExpired(f"NextPVR no longer knows the session used for {method}")
            raise NextPVRFailed(f"NextPVR refused {method} ({safe_message(env)})", code=env.code)
        return env

    async def logout_all(self) -> None:
        """Log out the main session and every pooled one (at shutdown). Never raises."""
        await self.pool.close()
        await self.session.logout()

    # -- streams ---------------------------------------------------------------
    def live_stream_url(self, channel_id: int, sid: str, client_id: str) -> URL:
        pairs = {"channeloid": str(channel_id), "client": client_id, "sid": sid}
        return URL(f"{self._base}/live?{_query(pairs)}", encoded=True)

    def recording_stream_url(self, recording_id: int, sid: str, client_id: str, growing: bool = False) -> URL:
        pairs = {"recording": str(recording_id), "client": client_id, "sid": sid}
        if growing:
            # NextPVR then sends no Content-Length and keeps appending
            pairs["growing"] = "true"
        return URL(f"{self._base}/live?{_query(pairs)}", encoded=True)

    async def open_stream(self, url: URL, *, headers: Mapping[str, str] | None = None,
                          read_timeout: float | None = None) -> UpstreamStream:
        """Open a NextPVR stream; 2xx gives an :class:`UpstreamStream`, anything else an error.

        ``read_timeout`` replaces ``timeouts.read`` as the longest silence allowed while
        reading (live TS uses ``ts.upstream_idle_timeout``). There is never a total timeout.
        """
        timeout = self._stream_timeout
        if read_timeout is not None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout.sock_connect,
                                            sock_read=read_timeout)
        return await open_stream(self._http, url, client_timeout=timeout, headers=headers,
                                 no_tuner_retry_after=self._config.no_tuner_retry_after)

    async def open_session_stream(self, url_for: Callable[[str, str], URL], *,
                                  headers: Mapping[str, str] | None = None,
                                  read_timeout: float | None = None) -> UpstreamStream:
        """Open a ``/live`` stream with the main session: ``url_for(sid, client_id)`` builds the
        URL. NextPVR refuses a stream of a sid it no longer knows with HTTP 500 rather than code 8
        (nextpvr-api.md I-J46), so a refused stream logs in again once and is tried once more."""
        sid = await self.session.sid()
        client_id = self.new_client_id()
        try:
            return await self.open_stream(url_for(sid, client_id), headers=headers, read_timeout=read_timeout)
        except NextPVRFailed:
            sid = await self.session.relogin(sid)
            return await self.open_stream(url_for(sid, client_id), headers=headers, read_timeout=read_timeout)
