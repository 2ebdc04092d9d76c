"""The application factory: routes, middlewares and the objects that live as long as the app.

Every long-lived service is built here, in three cleanup contexts that run in the order
listed in :func:`create_app` and are torn down in reverse: the NextPVR connection first
(so it goes last: sessions are logged out after every tuner was given back), then the
streaming services, then the lineup and the front ends (the guide builder stops first).
The ``web/*`` modules only add routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.config import Config
from proxy.hls.manager import TranscodeManager
from proxy.hls.segments import SegmentCache
from proxy.hls.tokens import TokenSigner
from proxy.keys import (
    CHANNELS_KEY,
    CLIENT_KEY,
    CONFIG_KEY,
    GROUPS_KEY,
    GUIDE_KEY,
    HTTP_KEY,
    ICONS_KEY,
    METRICS_KEY,
    REMUX_KEY,
    SEGMENTS_KEY,
    SIGNER_KEY,
    TRACE_KEY,
    TRANSCODES_KEY,
    TS_KEY,
)
from proxy.lineup import hdhr as hdhr_lineup
from proxy.lineup.channels import ChannelDirectory
from proxy.lineup.groups import ChannelGroups
from proxy.lineup.guide import GuideCache
from proxy.lineup.icons import IconCache
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient
from proxy.packager.manager import RemuxManager
from proxy.packager.timeshift import TimeshiftStore, default_root
from proxy.recordings.files import RecordingFiles
from proxy.security import auth_middleware
from proxy.ts.fanout import LiveTSManager
from proxy.web import api, hdhr, heads, health, lineup, live_hls, live_remux, live_ts, page, recordings, status
from proxy.web.middleware import (
    add_cors_headers,
    error_middleware,
    limit_middleware,
    observe_middleware,
    preflight_middleware,
)

__all__ = ["create_app"]

#: concurrent connections to NextPVR (streams hold theirs for their whole life)
_UPSTREAM_CONNECTIONS = 512


def create_app(config: Config, *, registry: CollectorRegistry | None = None,
               trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> web.Application:
    """Build the proxy. Pass a fresh ``registry`` per app in tests (metrics are never global);
    ``trace_configs`` observe every request the proxy makes to NextPVR."""
    app = web.Application(
        middlewares=[observe_middleware, error_middleware, limit_middleware(config.server.max_clients),
                     preflight_middleware, auth_middleware],
        client_max_size=config.server.client_max_size,
    )
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = Metrics(registry)
    app[TRACE_KEY] = list(trace_configs)
    app.cleanup_ctx.extend([_nextpvr, _streaming, _frontends])
    app.on_shutdown.append(_on_shutdown)
    app.on_response_prepare.append(add_cors_headers)
    health.setup(app)
    heads.setup(app)  # before the GET routes, which would answer HEAD by opening the stream
    live_hls.setup(app)
    live_remux.setup(app)
    live_ts.setup(app)
    lineup.setup(app)
    hdhr.setup(app)
    api.setup(app)
    recordings.setup(app)
    status.setup(app)  # after the streaming context: it reads the TS and transcode managers
    page.setup(app)
    return app


async def _nextpvr(app: web.Application) -> AsyncIterator[None]:
    """The HTTP session to NextPVR, the API client and what only needs the client."""
    config, metrics = app[CONFIG_KEY], app[METRICS_KEY]
    connector = aiohttp.TCPConnector(limit=_UPSTREAM_CONNECTIONS, limit_per_host=0, ttl_dns_cache=300)
    http = aiohttp.ClientSession(connector=connector, requote_redirect_url=False,
                                 trace_configs=app[TRACE_KEY] or None)
    client = NextPVRClient(config.nextpvr, http, observer=metrics)
    app[HTTP_KEY] = http
    app[CLIENT_KEY] = client
    app[CHANNELS_KEY] = ChannelDirectory(client)
    try:
        yield
    finally:
        await client.logout_all()
        await http.close()


async def _streaming(app: web.Application) -> AsyncIterator[None]:
    """Tokens, the segment cache, the transcodes (live and recording HLS) and the live TS fan-out."""
    config, metrics, client = app[CONFIG_KEY], app[METRICS_KEY], app[CLIENT_KEY]
    secret = config.auth.token_secret.encode() if config.auth.token_secret else None
    signer = app[SIGNER_KEY] = TokenSigner(secret, cache_entries=config.auth.token_cache_entries)
    segments = app[SEGMENTS_KEY] = SegmentCache(cache_bytes=config.hls.segment_cache_bytes,
                                                segment_max_bytes=config.hls.segment_max_bytes, metrics=metrics)
    transcodes = app[TRANSCODES_KEY] = TranscodeManager(config, client, signer, segments, metrics=metrics)
    ts = app[TS_KEY] = LiveTSManager(config.ts, live_ts.live_ts_opener(client, config.ts.upstream_idle_timeout),
                                     metrics=metrics)
    # computed at scrape time: keeping a running sum would cost work on every chunk
    metrics.ts_buffered_bytes.set_function(lambda: sum(s.buffered_bytes for s in ts.streams()))
    timeshift = None
    if config.hls.timeshift > 0:
        root = Path(config.hls.timeshift_dir) if config.hls.timeshift_dir else default_root()
        timeshift = TimeshiftStore(root, window=config.hls.timeshift, channel_bytes=config.hls.timeshift_max_bytes,
                                   total_bytes=config.hls.timeshift_total_bytes)
        await timeshift.start()
    remux = app[REMUX_KEY] = RemuxManager(config, ts, signer, metrics=metrics, timeshift=timeshift,
                                          listings=client.channel_listings)
    metrics.remux_viewers.set_function(remux.watchers)
    if app.get(hdhr.CODECS_KEY) is hdhr_lineup.no_codecs:  # not replaced by the embedding code (tests)
        app[hdhr.CODECS_KEY] = remux.codecs  # lineup.json names a channel's codecs once its PMT was seen
    metrics.remux_store_bytes.set_function(lambda: remux.store.bytes)
    try:
        yield
    finally:
        # give NextPVR its tuners back before the sessions go
        await remux.close()
        if timeshift is not None:
            await timeshift.close()
        await ts.close()
        await transcodes.close()
        await segments.close()


async def _frontends(app: web.Application) -> AsyncIterator[None]:
    """The lineup (guide, icons, groups), readiness, the HDHomeRun device and recordings."""
    config, client = app[CONFIG_KEY], app[CLIENT_KEY]
    guide = app[GUIDE_KEY] = GuideCache(
        channels=app[CHANNELS_KEY].channels, listings=client.channel_listings,
        days=config.guide.days, refresh_interval=config.guide.refresh_interval)
    app[ICONS_KEY] = IconCache(client, max_bytes=config.guide.icon_cache_bytes)
    app[GROUPS_KEY] = ChannelGroups(client)
    readiness = app[health.READINESS_KEY] = health.Readiness(client, config.server.readiness_cache)
    readiness.extra["guide"] = lineup.guide_readiness(guide)
    if config.hdhomerun.enabled:
        app[hdhr.HDHR_KEY] = hdhr.HDHomeRunDevice(config, client)
    app[recordings.RECORDINGS_KEY] = recordings.Recordings(
        recordings.RecordingLookup(client), RecordingFiles(config.recordings.path_map))
    guide.start()
    try:
        yield
    finally:
        await guide.close()


async def _on_shutdown(app: web.Application) -> None:
    # live TS responses never finish on their own: end them so the grace period is for segments
    ts = app.get(TS_KEY)
    if ts is not None:
        await ts.close()
