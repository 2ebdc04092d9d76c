"""Prometheus metrics on an injected registry.

Names follow the Prometheus conventions: a ``nextpvr_proxy_`` prefix, base units in
the name (``_seconds``, ``_bytes``), ``_total`` on counters. Label values are bounded
sets chosen by the code (route templates, NextPVR method names, outcomes, stream
kinds) — never a raw URL, a channel id, a token or a session id.

Live values that other objects already track (viewers, cache bytes, tuners) are
gauges updated where the state changes, in ``try/finally`` blocks, so a crashed
handler cannot leave a gauge high.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from proxy import __version__

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_REWRITE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_START_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)

#: stream kinds used as label values
STREAM_KINDS = ("hls", "ts", "recording")


class Metrics:
    """Every metric the proxy exports, created on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        ns = "nextpvr_proxy"
        self.build_info = Info("build", "Version of the proxy", namespace=ns, registry=r)
        self.build_info.info({"version": __version__})

        # -- HTTP server side
        self.requests = Counter(
            "http_requests", "Requests answered, by route template and status class",
            ["route", "method", "status_class"], namespace=ns, registry=r)
        self.request_duration = Histogram(
            "http_request_duration_seconds", "Time to the end of the response, by route template",
            ["route"], buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)
        self.sent_bytes = Counter(
            "client_sent_bytes", "Body bytes sent to clients", ["kind"], namespace=ns, registry=r)
        self.errors = Counter(
            "errors", "Error responses by reason", ["reason"], namespace=ns, registry=r)

        # -- NextPVR side
        self.received_bytes = Counter(
            "nextpvr_received_bytes", "Body bytes received from NextPVR", ["kind"],
            namespace=ns, registry=r)
        self.api_calls = Counter(
            "nextpvr_api_calls", "NextPVR API calls by method and outcome", ["method", "outcome"],
            namespace=ns, registry=r)
        self.api_duration = Histogram(
            "nextpvr_api_call_duration_seconds", "NextPVR API call latency", ["method"],
            buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)
        self.logins = Counter(
            "nextpvr_logins", "NextPVR logins (kind=login|relogin) by outcome", ["kind", "outcome"],
            namespace=ns, registry=r)

        # -- streams
        self.viewers = Gauge(
            "active_viewers", "Clients currently receiving a stream", ["kind"], namespace=ns, registry=r)
        self.upstream_streams = Gauge(
            "active_upstream_streams",
            "Streams currently open at NextPVR (kind=hls_transcode|ts_connection|recording)",
            ["kind"], namespace=ns, registry=r)
        self.tuners_in_use = Gauge(
            "tuners_in_use", "NextPVR tuners held by the proxy (transcodes + live TS connections)",
            namespace=ns, registry=r)
        self.tuner_exhausted = Counter(
            "tuner_exhausted", "Requests refused because no tuner was free", ["kind"],
            namespace=ns, registry=r)
        self.slow_viewers = Counter(
            "slow_viewers_disconnected", "Viewers disconnected because they fell behind their buffer",
            ["kind"], namespace=ns, registry=r)
        self.ts_buffered_bytes = Gauge(
            "ts_buffered_bytes", "Bytes queued for live TS viewers", namespace=ns, registry=r)
        self.transcode_starts = Counter(
            "transcode_starts", "NextPVR transcodes started, by outcome", ["outcome"],
            namespace=ns, registry=r)
        self.transcode_start_duration = Histogram(
            "transcode_start_duration_seconds", "From initiate to the first playlist",
            buckets=_START_BUCKETS, namespace=ns, registry=r)
        self.transcode_recoveries = Counter(
            "transcode_recoveries", "Transcodes restarted after NextPVR lost them", namespace=ns, registry=r)
        self.ts_reconnects = Counter(
            "ts_upstream_reconnects", "Live TS upstream connections re-opened after a break",
            namespace=ns, registry=r)

        # -- the remux packager (proxy/packager/)
        self.remux_segments = Counter(
            "remux_segments", "HLS segments packaged by the proxy from a channel's own MPEG-TS",
            namespace=ns, registry=r)
        self.remux_bytes = Counter(
            "remux_segment_bytes", "Bytes of the HLS segments packaged by the proxy", namespace=ns, registry=r)
        self.remux_packaging_seconds = Counter(
            "remux_packaging_seconds", "Time spent packaging (splicing, cutting, storing) incoming packets",
            namespace=ns, registry=r)
        self.remux_first_segment = Histogram(
            "remux_first_segment_seconds", "From a packaging session's first byte to its first listed segment",
            buckets=_START_BUCKETS, namespace=ns, registry=r)
        self.remux_viewers = Gauge(
            "remux_viewers", "HLS viewers of remuxed channels (asked for a playlist within three target "
            "durations); transcode-mode HLS viewers are active_viewers{kind=\"hls\"}", namespace=ns, registry=r)
        self.remux_channels = Gauge(
            "remux_channels", "Channels being packaged by the proxy", namespace=ns, registry=r)
        self.remux_store_bytes = Gauge(
            "remux_store_bytes", "Bytes of packaged segments held in memory", namespace=ns, registry=r)

        # -- HLS machinery
        self.cache_hits = Counter(
            "segment_cache_hits", "Segment requests served from the shared cache or a running fetch",
            namespace=ns, registry=r)
        self.cache_misses = Counter(
            "segment_cache_misses", "Segment requests that started a NextPVR fetch", namespace=ns, registry=r)
        self.cache_prefetches = Counter(
            "segment_prefetches", "Live segments fetched as soon as they were listed, before any viewer asked",
            namespace=ns, registry=r)
        self.cache_evictions = Counter(
            "segment_cache_evictions", "Segments evicted from the cache to stay within its byte budget",
            namespace=ns, registry=r)
        self.cache_bytes = Gauge(
            "segment_cache_bytes", "Bytes held by the segment cache", namespace=ns, registry=r)
        self.cache_entries = Gauge(
            "segment_cache_entries", "Segments held by the segment cache", namespace=ns, registry=r)
        self.rewrite_duration = Histogram(
            "playlist_rewrite_duration_seconds", "CPU time to rewrite one upstream playlist",
            buckets=_REWRITE_BUCKETS, namespace=ns, registry=r)
        self.dropped_tags = Counter(
            "hls_dropped_tags", "Upstream playlist tags (what=tag) or their client attributes, titles and "
            "fragments (what=attribute) not served because they named NextPVR or a session id",
            ["what"], namespace=ns, registry=r)
        for what in ("tag", "attribute"):
            self.dropped_tags.labels(what)

        for kind in STREAM_KINDS:
            self.viewers.labels(kind)
            self.sent_bytes.labels(kind)
            self.slow_viewers.labels(kind)
            self.tuner_exhausted.labels(kind)
        for kind in ("hls_transcode", "ts_connection", "recording"):
            self.upstream_streams.labels(kind)

    # -- proxy.nextpvr.client.ClientObserver ---------------------------------
    def on_api_call(self, method: str, outcome: str, seconds: float) -> None:
        self.api_calls.labels(method, outcome).inc()
        self.api_duration.labels(method).observe(seconds)

    def on_login(self, relogin: bool, ok: bool) -> None:
        self.logins.labels("relogin" if relogin else "login", "ok" if ok else "failed").inc()
