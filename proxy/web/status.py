"""``GET /api/status``: what the web page's status view shows, in one JSON document.

- ``nextpvr``: reachable, version (``setting.list``), tuners in use / total (``system.status``)
- ``streams``: every running channel or recording with its mode (``transcode``, ``ts``, and
  whatever further source is registered), viewers, upstream bitrate and uptime
- ``proxy``: version, uptime, resident memory, TS and HLS viewer totals

Running streams come from *status sources*: callables in ``app[STATUS_SOURCES_KEY]`` that
return :class:`StreamStatus` values. The TS fan-out and the transcode manager register theirs
here; another packager adds its own by appending one more callable, nothing else changes.

NextPVR is asked at most once per ``_NEXTPVR_TTL`` however many pages are open (one
single-flight refresh), so an open status view never becomes load on NextPVR.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import hdrs, web

from proxy import __version__
from proxy.errors import ProxyError
from proxy.hls.manager import TranscodeManager
from proxy.keys import CLIENT_KEY, REMUX_KEY, TRANSCODES_KEY, TS_KEY
from proxy.nextpvr.client import NextPVRClient
from proxy.packager.manager import RemuxManager
from proxy.ts.fanout import LiveTSManager
from proxy.web.routes import add_route

__all__ = ["STATUS_SOURCES_KEY", "StatusSource", "StreamStatus", "remux_source", "setup", "transcode_source",
           "ts_source"]

#: NextPVR's answers are reused this long (the page refreshes every few seconds)
_NEXTPVR_TTL = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStatus:
    #: "channel" or "recording"
    kind: str
    #: the NextPVR channel or recording id
    id: int
    #: "transcode" (NextPVR's HLS transcoder), "ts" (the shared MPEG-TS), "remux", ...
    mode: str
    viewers: int
    #: bits per second received from NextPVR, averaged since the stream started; None: unknown
    upstream_bps: int | None
    uptime: float
    #: transcoder profile, when the mode has one
    profile: str | None = None
    state: str = "running"


StatusSource = Callable[[], Iterable[StreamStatus]]
STATUS_SOURCES_KEY = web.AppKey("status_sources", list[StatusSource])
_STARTED_KEY = web.AppKey("status_started", float)


def ts_source(manager: LiveTSManager) -> StatusSource:
    def streams() -> Iterable[StreamStatus]:
        now = time.monotonic()
        for stream in manager.streams():
            if stream.closed or (stream.taps and not stream.viewers):
                continue  # only the packager reads it: shown once, as remux
            age = max(now - stream.opened_at, 1e-3)
            yield StreamStatus(kind="channel", id=stream.channel_id, mode="ts", viewers=len(stream.viewers),
                               upstream_bps=int(stream.received_bytes * 8 / age) if age >= 1 else None,
                               uptime=round(now - stream.opened_at, 1))

    return streams


def remux_source(remux: RemuxManager, ts: LiveTSManager) -> StatusSource:
    """Channels the proxy packages itself; their bitrate is the shared TS connection's."""
    def streams() -> Iterable[StreamStatus]:
        now = time.monotonic()
        for muxer in remux.muxers():
            stream = ts.get(muxer.channel_id)
            if stream is None or stream.closed:
                continue
            age = max(now - stream.opened_at, 1e-3)
            yield StreamStatus(kind="channel", id=muxer.channel_id, mode="remux", viewers=muxer.watchers(),
                               upstream_bps=int(stream.received_bytes * 8 / age) if age >= 1 else None,
                               uptime=round(now - stream.opened_at, 1))

    return streams


def transcode_source(manager: TranscodeManager) -> StatusSource:
    def streams() -> Iterable[StreamStatus]:
        now = time.monotonic()
        for transcode in manager.running():
            key = transcode.key
            yield StreamStatus(kind=key.kind, id=key.target_id, mode="transcode",
                               viewers=transcode.viewer_count(), upstream_bps=None,
                               uptime=round(now - transcode.started_at, 1), profile=key.profile,
                               state=transcode.state.value)

    return streams


class _NextPVRProbe:
    """NextPVR's side of the status, refreshed single-flight and reused for ``_NEXTPVR_TTL``."""

    def __init__(self, client: NextPVRClient) -> None:
        self._client = client
        self._value: dict[str, Any] | None = None
        self._expires = 0.0
        self._pending: asyncio.Task[dict[str, Any]] | None = None

    async def get(self) -> dict[str, Any]:
        if self._value is not None and time.monotonic() < self._expires:
            return self._value
        if self._pending is None:
            self._pending = asyncio.create_task(self._probe())
        pending = self._pending
        try:
            self._value = await asyncio.shield(pending)
        finally:
            if pending.done() and self._pending is pending:
                self._pending = None
        self._expires = time.monotonic() + _NEXTPVR_TTL
        return self._value

    async def _probe(self) -> dict[str, Any]:
        try:
            settings = await self._client.setting_list()
            status = await self._client.system_status()
        except ProxyError as exc:
            return {"reachable": False, "error": exc.message, "version": None,
                    "tuners_total": None, "tuners_in_use": None}
        return {"reachable": True, "error": None, "version": settings.readable_version or None,
                "tuners_total": status.tuner_count, "tuners_in_use": status.busy_count}

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)


_NEXTPVR_KEY = web.AppKey("status_nextpvr", _NextPVRProbe)


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


async def status(request: web.Request) -> web.Response:
    app = request.app
    streams = [s for source in app[STATUS_SOURCES_KEY] for s in source()]
    streams.sort(key=lambda s: (s.kind, s.id, s.mode))
    viewers: dict[str, int] = {}
    for s in streams:
        viewers[s.mode] = viewers.get(s.mode, 0) + s.viewers
    body = {
        "nextpvr": await app[_NEXTPVR_KEY].get(),
        "proxy": {"version": __version__, "uptime": round(time.monotonic() - app[_STARTED_KEY], 1),
                  "memory_bytes": resident_bytes(), "viewers": viewers},
        "streams": [asdict(s) for s in streams],
    }
    return web.json_response(body, headers={hdrs.CACHE_CONTROL: "no-store"})


async def _status_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_STARTED_KEY] = time.monotonic()
    probe = app[_NEXTPVR_KEY] = _NextPVRProbe(app[CLIENT_KEY])
    app[STATUS_SOURCES_KEY].extend([ts_source(app[TS_KEY]), remux_source(app[REMUX_KEY], app[TS_KEY]),
                                    transcode_source(app[TRANSCODES_KEY])])
    yield
    await probe.close()


def setup(app: web.Application) -> None:
    """Register after the app's service context (it reads the TS and transcode managers)."""
    app[STATUS_SOURCES_KEY] = []
    app.cleanup_ctx.append(_status_ctx)
    add_route(app, hdrs.METH_GET, "/api/status", status, json_errors=True)
