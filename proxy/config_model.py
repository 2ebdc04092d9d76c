"""Configuration model: the frozen, typed dataclasses one config file becomes.

Every field here is a key of the YAML file (``nextpvr.base_url`` is ``NextPVRConfig.base_url``);
its type and default are what ``config_loader._Loader`` validates against. ``Bytes`` and ``Seconds``
mark the fields that may be written with units (``"4MiB"``, ``"30s"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal


class _Bytes:
    """Marker: an ``int`` that may be written as ``"4MiB"``."""


class _Seconds:
    """Marker: a ``float`` that may be written as ``"30s"`` / ``"5m"``."""


Bytes = Annotated[int, _Bytes]
Seconds = Annotated[float, _Seconds]

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutConfig:
    #: TCP connect to NextPVR
    connect: Seconds = 5.0
    #: longest silence between two reads of an answer or a stream (never a total on streams)
    read: Seconds = 20.0
    #: total time for one API call (``/service?method=...``) or transcode playlist fetch; streams have none
    api_total: Seconds = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NextPVRConfig:
    base_url: str
    pin: str
    #: NextPVR's default is XML; JSON is asked for with ``format=json``
    response_format: Literal["xml", "json"] = "xml"
    #: sent as ``client=<name>-<n>`` on stream URLs
    client_name: str = "nextpvr-hls-proxy"
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    #: most NextPVR sessions held at once (one per running transcode, plus one for the API)
    max_sessions: int = 8
    #: logged-in sessions kept warm for the next transcode when nothing uses them
    idle_sessions: int = 1
    #: idle pooled sessions are logged out after this long
    idle_session_ttl: Seconds = 300.0
    #: number of tuners, when ``system.status`` does not tell (null: ask NextPVR)
    tuner_count: int | None = None
    #: value of ``Retry-After`` when NextPVR has no tuner free
    no_tuner_retry_after: int = 10
    #: further origins (scheme://host:port) a NextPVR playlist may point at
    extra_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: absolute URL players reach the proxy at (for M3U/HDHomeRun); null: from the request
    public_base_url: str | None = None
    #: honour X-Forwarded-Proto/Host when building absolute URLs (behind a reverse proxy)
    trust_forwarded_headers: bool = False
    #: on SIGTERM, in-flight responses get this long before the process exits
    shutdown_grace: Seconds = 10.0
    #: largest request body accepted (only the JSON API takes bodies)
    client_max_size: Bytes = 64 * 1024
    #: asyncio event loop implementation
    event_loop: Literal["auto", "uvloop", "asyncio"] = "asyncio"
    #: how long a readiness result is reused before NextPVR is asked again
    readiness_cache: Seconds = 10.0
    #: a client that accepts no bytes for this long is disconnected (its response would
    #: otherwise hold a handler, a connection and buffers forever)
    send_timeout: Seconds = 30.0
    #: requests served at once (streams included); beyond it new requests get 503, so memory
    #: stays bounded at roughly this many viewer buffers
    max_clients: int = 1000
    #: a connection whose first request line and headers are not complete this long after it
    #: opened is dropped (slowloris); later requests on it are bounded by keepalive_timeout
    header_timeout: Seconds = 10.0
    #: a kept-alive connection idle (or trickling a request head) this long after its last
    #: response is closed
    keepalive_timeout: Seconds = 30.0
    #: open connections, idle keep-alive ones included; beyond it a new connection gets 503 and is
    #: closed. null: twice max_clients
    max_connections: int | None = None

    @property
    def connection_limit(self) -> int:
        return self.max_connections if self.max_connections is not None else 2 * self.max_clients


@dataclass(frozen=True, slots=True, kw_only=True)
class HLSConfig:
    #: transcoder profile when the request names none (NextPVR names them by height)
    profile: str = "720p"
    #: profiles a client may ask for with ?profile=
    profiles: tuple[str, ...] = ("1080p", "720p", "576p", "504p", "480p", "360p", "240p", "144p")
    #: interval between channel.transcode.status polls while a transcode starts
    status_poll_interval: Seconds = 0.1
    #: give up on a transcode start (initiate, status polls, first playlist) after this long in total
    start_timeout: Seconds = 60.0
    #: keep-alive for the transcode while anyone watches (NextPVR drops it after ~15 s)
    keepalive_interval: Seconds = 5.0
    #: stop the transcode and free the tuner when no viewer asked for anything this long
    idle_timeout: Seconds = 30.0
    #: recent-segment cache shared by all viewers
    segment_cache_bytes: Bytes = 256 * _MIB
    #: a single segment larger than this is refused instead of buffered
    segment_max_bytes: Bytes = 64 * _MIB
    #: an upstream playlist larger than this is refused (502) instead of buffered
    playlist_max_bytes: Bytes = 16 * _MIB
    #: an upstream playlist listing more segments than this is refused (502): with the byte limit
    #: (which also bounds the rewritten playlist) it bounds the work and memory one playlist costs
    playlist_max_segments: int = 50_000
    #: fetch new live segments as soon as they are listed, before a viewer asks
    prefetch: bool = True
    #: times a lost transcode is restarted before viewers get an error
    recover_attempts: int = 3
    #: key-system URI schemes passed to players verbatim in EXT-X-KEY / EXT-X-SESSION-KEY (data: always
    #: passes); a URI of any other scheme becomes the always-403 URL
    passthrough_schemes: tuple[str, ...] = ("skd",)
    #: who makes live HLS: ``remux`` packages the channel's own MPEG-TS in the proxy (broadcast
    #: quality, no NextPVR transcoder, one tuner shared with TS viewers), ``transcode`` asks NextPVR's
    #: transcoder, ``auto`` remuxes H.264/HEVC channels and transcodes the rest (browsers cannot
    #: decode MPEG-2). ``?mode=`` overrides it per request; ``?profile=`` always means transcode.
    mode: Literal["auto", "remux", "transcode"] = "auto"
    #: remux: cut a segment at the first keyframe at or after this long (long GOPs give longer ones)
    segment_duration: Seconds = 2.0
    #: remux: segments listed in the live playlist
    window_segments: int = 6
    #: remux: segment bytes held for one channel (oldest evicted first)
    remux_channel_bytes: Bytes = 64 * _MIB
    #: remux: segment bytes held for all channels together
    remux_total_bytes: Bytes = 256 * _MIB
    #: remux: how long the first playlist waits for a PMT and a first segment
    remux_start_timeout: Seconds = 10.0
    #: remux: how much of a watched channel the playlist keeps for pause and rewind (on disk; 0: off)
    timeshift: Seconds = 0.0
    #: remux: timeshift bytes kept on disk for one channel (oldest segments leave first)
    timeshift_max_bytes: Bytes = 2 * _GIB
    #: remux: timeshift bytes kept on disk for all channels together
    timeshift_total_bytes: Bytes = 8 * _GIB
    #: remux: where timeshift segments are written (null: a folder under the system temp dir)
    timeshift_dir: str | None = None
    #: remux: Low-Latency HLS (parts, a preload hint, blocking reloads, delta updates); false: plain HLS
    low_latency: bool = True
    #: remux with low_latency: the longest part (EXT-X-PART-INF:PART-TARGET); parts are cut at frame starts
    part_duration: Seconds = 0.33


@dataclass(frozen=True, slots=True, kw_only=True)
class TSConfig:
    #: bytes queued for one viewer before it counts as too slow and is disconnected
    viewer_buffer_bytes: Bytes = 4 * _MIB
    #: keep the tuner this long after the last viewer left (zapping back is instant)
    linger: Seconds = 5.0
    #: end the stream when NextPVR sends nothing for this long
    upstream_idle_timeout: Seconds = 10.0
    #: reconnect when the upstream connection breaks (not when it ends cleanly)
    reconnect: bool = True
    #: attempts in a row (0.5 s, 1 s, 2 s, ... apart); a connection that lived a while restores them
    reconnect_attempts: int = 3
    #: bytes kept from the last keyframe so a new viewer starts on a decodable picture
    keyframe_cache_bytes: Bytes = 8 * _MIB
    #: kernel send buffer of a viewer's socket (0: the OS default, which grows to MBs and hides a
    #: stalled viewer behind kernel memory for minutes)
    socket_send_buffer: Bytes = 256 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class PathMapping:
    #: a recording path prefix as NextPVR reports it
    nextpvr: str
    #: where the same folder is mounted on the proxy's machine
    local: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingsConfig:
    #: serve recording files from local disk when the folder is mounted here
    path_map: tuple[PathMapping, ...] = ()
    #: transcoder profile for /recordings/{id}.m3u8 (null: hls.profile)
    hls_profile: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuideConfig:
    #: days of programme data in /epg.xml
    days: int = 7
    #: rebuild the guide in the background this often
    refresh_interval: Seconds = 3600.0
    #: stream URLs in /playlist.m3u when the request has no ?format=
    default_stream_format: Literal["ts", "hls"] = "ts"
    #: memory for cached channel icons
    icon_cache_bytes: Bytes = 16 * _MIB


@dataclass(frozen=True, slots=True, kw_only=True)
class HDHomeRunConfig:
    enabled: bool = True
    #: 8 hex digits; null derives a stable one from nextpvr.base_url
    device_id: str | None = None
    friendly_name: str = "NextPVR HLS Proxy"
    #: tuners advertised to Plex/Jellyfin (null: nextpvr.tuner_count, then system.status)
    tuner_count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DVRConfig:
    pre_padding_minutes: int = 1
    post_padding_minutes: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    #: keys accepted on playlists, lineup and API routes (empty: no client authentication)
    api_keys: tuple[str, ...] = ()
    #: key for write actions of the API (null: write actions are off)
    admin_key: str | None = None
    #: key material for the encrypted segment URLs (null: a random key per process)
    token_secret: str | None = None
    #: lifetime of a signed segment URL
    token_ttl: Seconds = 6 * 3600.0
    #: segment tokens remembered once verified (every segment request verifies one; 0: no cache)
    token_cache_entries: int = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["human", "json"] = "human"
    access_log: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class UIConfig:
    #: serve the web page at ``/`` (its data comes from ``/api/``, which stays on either way)
    enabled: bool = True
    #: hls.js (the UMD build, ``hls.min.js``) on disk; null: the repository's ``node_modules``
    #: (``npm ci``), then the Docker image's copy
    hlsjs_path: str | None = None
    #: hls.js elsewhere (a CDN or another server): the page loads it from there instead
    hlsjs_url: str | None = None
    #: how often the status view asks ``/api/status`` again
    status_refresh: Seconds = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    nextpvr: NextPVRConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    hls: HLSConfig = field(default_factory=HLSConfig)
    ts: TSConfig = field(default_factory=TSConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    hdhomerun: HDHomeRunConfig = field(default_factory=HDHomeRunConfig)
    dvr: DVRConfig = field(default_factory=DVRConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ui: UIConfig = field(default_factory=UIConfig)
