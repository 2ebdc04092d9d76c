"""The application factory: routes, middlewares and the objects that live as long as the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

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
    HTTP_KEY,
    METRICS_KEY,
    REMUX_KEY,
    SEGMENTS_KEY,
    SIGNER_KEY,
    TRANSCODES_KEY,
    TS_KEY,
)
from proxy.lineup.channels import ChannelDirectory
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient
from proxy.packager.manager import RemuxManager
from proxy.security import auth_middleware
from proxy.ts.fanout import LiveTSManager
from proxy.web import api, hdhr, health, lineup, live_hls, live_remux, live_ts, recordings
from proxy.web.middleware import (
    add_cors_headers,
    error_middleware,
    limit_middleware,
    observe_middleware,
    preflight_middleware,
)

__all__ = ["create_app"]

TRACE_KEY = web.AppKey("trace_configs", list[aiohttp.TraceConfig])

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
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_on_shutdown)
    app.on_response_prepare.append(add_cors_headers)
    health.setup(app)
    live_hls.setup(app)
    live_remux.setup(app)
    live_ts.setup(app)
    lineup.setup(app)
    hdhr.setup(app)
    api.setup(app)
    recordings.setup(app)
    # runs after every cleanup context, so both the readiness checker and the guide exist
    app.on_startup.append(_register_readiness)
    return app


async def _register_readiness(app: web.Application) -> None:
    app[health.READINESS_KEY].extra["guide"] = lineup.guide_readiness(app[lineup.GUIDE_KEY])


async def _services(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    metrics = app[METRICS_KEY]
    connector = aiohttp.TCPConnector(limit=_UPSTREAM_CONNECTIONS, limit_per_host=0, ttl_dns_cache=300)
    http = aiohttp.ClientSession(connector=connector, requote_redirect_url=False,
                                 trace_configs=app[TRACE_KEY] or None)
    client = NextPVRClient(config.nextpvr, http, observer=metrics)
    secret = config.auth.token_secret.encode() if config.auth.token_secret else None
    signer = TokenSigner(secret)
    segments = SegmentCache(cache_bytes=config.hls.segment_cache_bytes,
                            segment_max_bytes=config.hls.segment_max_bytes, metrics=metrics)
    app[HTTP_KEY] = http
    app[CLIENT_KEY] = client
    app[SIGNER_KEY] = signer
    app[SEGMENTS_KEY] = segments
    app[CHANNELS_KEY] = ChannelDirectory(client)
    app[TRANSCODES_KEY] = TranscodeManager(config, client, signer, segments, metrics=metrics)
    ts = app[TS_KEY] = LiveTSManager(config.ts, live_ts.live_ts_opener(client, config.ts.upstream_idle_timeout),
                                metrics=metrics)
    # computed at scrape time: keeping a running sum would cost work on every chunk
    metrics.ts_buffered_bytes.set_function(lambda: sum(s.buffered_bytes for s in ts.streams()))
    remux = app[REMUX_KEY] = RemuxManager(config, ts, signer, metrics=metrics)
    metrics.remux_viewers.set_function(remux.watchers)
    metrics.remux_store_bytes.set_function(lambda: remux.store.bytes)
    try:
        yield
    finally:
        # give NextPVR its tuners back first, then its sessions
        await remux.close()
        await app[TS_KEY].close()
        await app[TRANSCODES_KEY].close()
        await segments.close()
        await client.logout_all()
        await http.close()


async def _on_shutdown(app: web.Application) -> None:
    # live TS responses never finish on their own: end them so the grace period is for segments
    ts = app.get(TS_KEY)
    if ts is not None:
        await ts.close()
