"""NextPVRClient: API calls, transcode control, stream URLs and stream opening.

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
"""

from __future__ import annotations

import itertools
import logging
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
    BadRequest,
    NextPVRError,
    NextPVRFailed,
    NextPVRTimeout,
    NextPVRUnparseable,
    NextPVRUnreachable,
    NoTunerAvailable,
    RecordingNotFound,
    SessionExpired,
    TranscodeFailed,
    UpstreamTooLarge,
)
from proxy.log import register_secret
from proxy.nextpvr.envelope import Envelope, is_session_error, parse_envelope, safe_message
from proxy.nextpvr.models import (
    Channel,
    ChannelGroup,
    Listing,
    Recording,
    Settings,
    SystemStatus,
    TranscodeStatus,
)
from proxy.nextpvr.parse import (
    parse_channel_groups,
    parse_channels,
    parse_listings,
    parse_recordings,
    parse_settings,
    parse_system_status,
    parse_transcode_status,
)
from proxy.nextpvr.session import NextPVRSession, SessionPool, SidHistory
from proxy.nextpvr.streams import UpstreamStream, open_stream, read_limited, says_no_tuner

__all__ = [
    "OUTCOMES",
    "ClientObserver",
    "NextPVRClient",
    "RecordingFilter",
    "TranscodeKind",
]

log = logging.getLogger("proxy.nextpvr")

#: every ``outcome`` label :meth:`ClientObserver.on_api_call` can receive
OUTCOMES = ("ok", "code8", "failed", "unreachable", "timeout", "unparseable")

TranscodeKind = Literal["channel", "recording"]
RecordingFilter = Literal["all", "ready", "pending", "recording", "conflict", "failed", "recent"]
ParamValue = str | int | float | bool

#: an API answer larger than this is refused; a whole EPG for one channel is a few MB
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_MAX_ICON_BYTES = 4 * 1024 * 1024
_IMAGE_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
)


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


class NextPVRClient:
    """Typed access to one NextPVR server over the app's shared ``ClientSession``."""

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

    def __repr__(self) -> str:
        return f"<NextPVRClient {URL(self._base).origin()}>"

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

    async def channel_list(self, group: str | None = None, *, extras: bool = False) -> tuple[Channel, ...]:
        """Channels, optionally of one group. ``extras`` asks for each channel's group
        memberships (NextPVR sends them only then; in XML at least)."""
        params: dict[str, ParamValue] = {"group_id": group} if group else {}
        if extras:
            params["extras"] = True
        return parse_channels(await self.call("channel.list", params))

    async def channel_groups(self) -> tuple[ChannelGroup, ...]:
        return parse_channel_groups(await self.call("channel.groups"))

    async def channel_listings(
        self, channel_id: int, start: float | None = None, end: float | None = None
    ) -> tuple[Listing, ...]:
        """EPG events of one channel; ``start``/``end`` are epoch seconds."""
        params: dict[str, ParamValue] = {"channel_id": channel_id}
        if start is not None:
            params["start"] = int(start)
        if end is not None:
            params["end"] = int(end)
        return parse_listings(await self.call("channel.listings", params), channel_id)

    async def channel_icon(self, channel_id: int) -> tuple[bytes, str] | None:
        """``(image bytes, content type)``, or None when NextPVR has no icon for the channel."""
        method = "channel.icon"
        sid = await self.session.sid()
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                raw = await self._fetch(
                    self._service_url(method, {"channel_id": str(channel_id)}, sid, None), method,
                    _MAX_ICON_BYTES)
            except NextPVRError as exc:
                self._observe(method, _outcome(exc), started)
                raise
            if raw.status == 404:
                self._observe(method, "ok", started)
                return None
            if not 200 <= raw.status < 300:
                self._observe(method, "failed", started)
                raise _HTTPStatusError(method, raw.status)
            image_type = _image_type(raw)
            if image_type is not None:
                self._observe(method, "ok", started)
                return raw.body, image_type
            try:
                env = parse_envelope(raw.body, method)
            except NextPVRUnparseable:
                self._observe(method, "unparseable", started)
                raise
            if is_session_error(env) and attempt == 1:
                self._observe(method, "code8", started)
                sid = await self.session.relogin(sid)
                continue
            self._observe(method, "ok" if env.ok else "failed", started)
            if is_session_error(env):
                raise SessionExpired(f"NextPVR refused a fresh session for {method} (code 8 twice)")
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    async def recording_list(
        self, filter: RecordingFilter = "all", recording_id: int | None = None
    ) -> tuple[Recording, ...]:
        params: dict[str, ParamValue] = {"filter": filter}
        if recording_id is not None:
            params["recording_id"] = recording_id
        return parse_recordings(await self.call("recording.list", params))

    async def recording_get(self, recording_id: int) -> Recording:
        """One recording by id; RecordingNotFound when NextPVR lists none."""
        for rec in await self.recording_list("all", recording_id):
            if rec.id == recording_id:
                return rec
        raise RecordingNotFound(f"NextPVR has no recording {recording_id}")

    async def recording_save(
        self,
        *,
        event_id: int | None = None,
        channel_id: int | None = None,
        start: float | None = None,
        duration: int | None = None,
        name: str | None = None,
        pre_padding: int | None = None,
        post_padding: int | None = None,
        recording_id: int | None = None,
    ) -> None:
        """Schedule (or, with ``recording_id``, update) a one-off recording.

        Either ``event_id`` (an EPG listing id) or ``channel_id`` + ``start`` (epoch s) +
        ``duration`` (s). Paddings are minutes. NextPVR does not report the new id.
        """
        params: dict[str, ParamValue] = {}
        if event_id is not None:
            params["event_id"] = event_id
        elif channel_id is not None and start is not None and duration is not None:
            params.update(channel=channel_id, time_t=int(start), duration=int(duration))
            if name:
                params["name"] = name
        else:
            raise BadRequest("give either event_id or channel_id, start and duration", field="event_id")
        for key, value in (("pre_padding", pre_padding), ("post_padding", post_padding),
                           ("recording_id", recording_id)):
            if value is not None:
                params[key] = value
        await self.call("recording.save", params)

    async def recording_delete(self, recording_id: int) -> None:
        await self.call("recording.delete", {"recording_id": recording_id})

    async def setting_list(self) -> Settings:
        return parse_settings(await self.call("setting.list"))

    async def system_status(self) -> SystemStatus:
        # only the XML shape of system.status is known, so always ask for XML
        return parse_system_status(await self.call("system.status", fmt="xml"))

    async def logout_all(self) -> None:
        """Log out the main session and every pooled one (at shutdown). Never raises."""
        await self.pool.close()
        await self.session.logout()

    # -- transcodes (one per session) --------------------------------------------
    async def transcode_initiate(
        self, session: NextPVRSession, kind: TranscodeKind, target_id: int, profile: str
    ) -> None:
        """Start (or replace: ``force=true``) the transcode of ``session``."""
        params: dict[str, ParamValue] = {"force": True, f"{kind}_id": target_id, "profile": profile}
        try:
            await self.call(f"{kind}.transcode.initiate", params, session=session)
        except NextPVRFailed as exc:
            if says_no_tuner(exc.message):
                raise NoTunerAvailable(retry_after=self._config.no_tuner_retry_after) from exc
            raise TranscodeFailed(
                f"NextPVR refused to start a {kind} transcode with profile {profile!r} ({exc.message})",
                profile=profile) from exc

    async def transcode_status(self, session: NextPVRSession, kind: TranscodeKind) -> TranscodeStatus:
        try:
            env = await self.call(f"{kind}.transcode.status", session=session)
        except NextPVRFailed as exc:
            raise TranscodeFailed(f"NextPVR's {kind} transcoder stopped ({exc.message})") from exc
        return parse_transcode_status(env)

    def transcode_playlist_url(self, sid: str, kind: TranscodeKind) -> URL:
        return self._service_url(f"{kind}.transcode.m3u8", {}, sid, None)

    async def transcode_lease(self, session: NextPVRSession, kind: TranscodeKind) -> bool:
        """Renew the transcode; False when NextPVR says there is none (it 404s or refuses)."""
        try:
            await self.call(f"{kind}.transcode.lease", session=session, relogin=False)
        except (NextPVRFailed, SessionExpired) as exc:
            log.debug("NextPVR has no %s transcode for session #%d to lease: %s",
                      kind, session.number, exc.message)
            return False
        return True

    async def transcode_stop(self, session: NextPVRSession, kind: TranscodeKind) -> bool:
        """Stop the transcode; True when NextPVR confirmed. Never raises (teardown path)."""
        if not session.logged_in:
            return False
        try:
            await self.call(f"{kind}.transcode.stop", session=session, relogin=False)
        except NextPVRError as exc:
            log.debug("stopping the %s transcode of session #%d: %s", kind, session.number, exc.message)
            return False
        return True

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


def _image_type(raw: _Raw) -> str | None:
    declared = raw.content_type.split(";")[0].strip().lower()
    for magic, mime in _IMAGE_MAGIC:
        if raw.body.startswith(magic):
            return declared if declared.startswith("image/") else mime
    if raw.body[:4] == b"RIFF" and raw.body[8:12] == b"WEBP":
        return "image/webp"
    if declared.startswith("image/") and raw.body:
        return declared
    return None
