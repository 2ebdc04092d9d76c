"""Configuration: one YAML file, parsed once into frozen, typed objects.

``load_config(path)`` reads the file, substitutes ``${VAR}`` (and ``${VAR:-default}``)
from the environment inside string values, and validates every key against the
dataclasses below. Anything wrong raises :class:`ConfigError`, whose message names
the file, the dotted key and what was expected, one line per problem. The CLI turns
it into exit code 2.

Sizes accept integers (bytes) or strings such as ``"4MiB"``; durations accept numbers
(seconds) or strings such as ``"30s"``, ``"5m"``, ``"1h"``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DVRConfig",
    "GuideConfig",
    "HDHomeRunConfig",
    "HLSConfig",
    "LoggingConfig",
    "NextPVRConfig",
    "PathMapping",
    "RecordingsConfig",
    "ServerConfig",
    "TSConfig",
    "TimeoutConfig",
    "UIConfig",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """The configuration file is unusable. ``str()`` is the message for the user."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"config error in {source}: {p}" for p in problems))


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


# ---------------------------------------------------------------------------
# loading


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["the file is not UTF-8 text"]) from None
    return parse_config(text, source=source, env=os.environ if env is None else env)


def parse_config(text: str, *, source: str = "<config>", env: Mapping[str, str]) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise ConfigError(source, [f"malformed YAML{where}: {problem}"]) from None
    if raw is None:
        raw = {}
    loader = _Loader(env)
    cfg = loader.build(Config, raw, "")
    loader.check(cfg)
    if loader.problems:
        raise ConfigError(source, loader.problems)
    assert isinstance(cfg, Config)
    return cfg


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
               "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
               "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
               "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_MISSING = object()


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    return f"{type(value).__name__} {value!r}"


class _Loader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> object:
        self.problems.append(f"{key or '<top level>'}: {message}")
        return _MISSING

    # -- interpolation -------------------------------------------------
    def interpolate(self, value: str, key: str) -> tuple[str, bool]:
        """Substitute ``${VAR}``; returns the text and whether anything was substituted."""
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        out = _VAR.sub(sub, value)
        if missing:
            name = missing[0]
            self.fail(key, f"environment variable {name} is not set (used as ${{{name}}})")
        return out, out != value or bool(missing)

    # -- dataclasses ----------------------------------------------------
    def build(self, cls: type[Any], raw: object, prefix: str) -> object:
        if not isinstance(raw, dict):
            return self.fail(prefix, f"expected a mapping, got {_describe(raw)}")
        hints = get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, object] = {}
        for name in raw:
            if not isinstance(name, str) or name not in fields:
                known = ", ".join(sorted(fields))
                self.fail(_join(prefix, str(name)), f"unknown key (expected one of: {known})")
        for name, f in fields.items():
            key = _join(prefix, name)
            if name not in raw:
                has_default = (f.default is not dataclasses.MISSING
                               or f.default_factory is not dataclasses.MISSING)
                if not has_default:
                    self.fail(key, "required key is missing")
                continue
            value = self.convert(hints[name], raw[name], key)
            if value is not _MISSING:
                kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError:
            return _MISSING  # a required field failed; the problem is already recorded

    def convert(self, tp: Any, value: object, key: str, *, from_env: bool = False) -> object:
        marker = None
        if get_origin(tp) is Annotated:
            tp, marker = get_args(tp)[0], get_args(tp)[1]
        origin = get_origin(tp)
        if isinstance(value, str) and not from_env and "${" in value:
            before = len(self.problems)
            value, from_env = self.interpolate(value, key)
            if len(self.problems) > before:
                return _MISSING
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if value is None or (from_env and value == ""):
                return None
            return self.convert(args[0], value, key, from_env=from_env)
        if origin is Literal:
            choices = get_args(tp)
            if value in choices:
                return value
            shown = ", ".join(repr(c) for c in choices)
            return self.fail(key, f"expected one of {shown}, got {_describe(value)}")
        if origin is tuple:
            item_tp = get_args(tp)[0]
            if not isinstance(value, list):
                return self.fail(key, f"expected a list, got {_describe(value)}")
            items = [self.convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
            return _MISSING if any(i is _MISSING for i in items) else tuple(items)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.build(tp, value, key)
        if marker is _Bytes:
            return self.size(value, key)
        if marker is _Seconds:
            return self.duration(value, key)
        if tp is bool:
            if from_env and isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, bool):
                return value
            return self.fail(key, f"expected true or false, got {_describe(value)}")
        if tp is int:
            if from_env and isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self.fail(key, f"expected an integer, got {_describe(value)}")
        if tp is float:
            if from_env and isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return self.fail(key, f"expected a number, got {_describe(value)}")
        if tp is str:
            if isinstance(value, str):
                return value
            if isinstance(value, int) and not isinstance(value, bool) and key.endswith(".pin"):
                # an unquoted PIN such as 1234 reads as an integer; 0000 would lose its zeros
                return self.fail(key, "expected a string; quote the PIN, for example pin: \"0000\"")
            return self.fail(key, f"expected a string, got {_describe(value)}")
        raise TypeError(f"unsupported config type {tp!r} at {key}")  # pragma: no cover

    def size(self, value: object, key: str) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            m = _SIZE.match(value)
            if m:
                unit = (m.group(2) or "").lower()
                return int(float(m.group(1)) * _SIZE_UNITS[unit])
        return self.fail(key, f"expected a size in bytes such as 4194304 or \"4MiB\", got {_describe(value)}")

    def duration(self, value: object, key: str) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return float(m.group(1)) * _DURATION_UNITS[m.group(2) or ""]
        return self.fail(key, f"expected a duration such as 30 or \"30s\" or \"5m\", got {_describe(value)}")

    # -- cross-field checks ---------------------------------------------
    def check(self, cfg: object) -> None:
        if not isinstance(cfg, Config):
            return
        _check_origin(self, "nextpvr.base_url", cfg.nextpvr.base_url)
        for i, origin in enumerate(cfg.nextpvr.extra_origins):
            _check_origin(self, f"nextpvr.extra_origins[{i}]", origin)
        if cfg.server.public_base_url is not None:
            _check_origin(self, "server.public_base_url", cfg.server.public_base_url)
        if not cfg.nextpvr.pin:
            self.fail("nextpvr.pin", "must not be empty")
        if not 0 <= cfg.server.port <= 65535:
            self.fail("server.port", f"expected a port between 0 and 65535, got {cfg.server.port}")
        if cfg.server.max_clients < 1:
            self.fail("server.max_clients", "expected at least 1")
        if cfg.server.max_connections is not None and cfg.server.max_connections < cfg.server.max_clients:
            self.fail("server.max_connections", f"expected at least server.max_clients ({cfg.server.max_clients}): "
                      "every request in flight holds a connection")
        for key in ("header_timeout", "keepalive_timeout"):
            if getattr(cfg.server, key) <= 0:
                self.fail(f"server.{key}", "expected a duration above 0")
        if cfg.nextpvr.max_sessions < 1:
            self.fail("nextpvr.max_sessions", "expected at least 1")
        if cfg.hls.profile not in cfg.hls.profiles:
            self.fail("hls.profile", f"expected one of hls.profiles {list(cfg.hls.profiles)}")
        if cfg.recordings.hls_profile is not None and cfg.recordings.hls_profile not in cfg.hls.profiles:
            self.fail("recordings.hls_profile", f"expected one of hls.profiles {list(cfg.hls.profiles)}")
        if not 1 <= cfg.hls.playlist_max_segments <= 1_000_000:
            self.fail("hls.playlist_max_segments", "expected an integer between 1 and 1000000")
        if cfg.hls.status_poll_interval <= 0:
            self.fail("hls.status_poll_interval", "expected a duration above 0")
        if cfg.hls.keepalive_interval <= 0 or cfg.hls.keepalive_interval >= 15:
            self.fail("hls.keepalive_interval", "expected a duration above 0 and below 15 s "
                      "(NextPVR drops a transcode after about 15 s without activity)")
        for i, scheme in enumerate(cfg.hls.passthrough_schemes):
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,31}", scheme) or scheme.lower() in ("http", "https"):
                self.fail(f"hls.passthrough_schemes[{i}]", "expected a URI scheme such as skd (not http or https), "
                          f"got {scheme!r}")
        if not 0.5 <= cfg.hls.segment_duration <= 30:
            self.fail("hls.segment_duration", "expected a duration from 0.5 s to 30 s")
        if not 2 <= cfg.hls.window_segments <= 100:
            self.fail("hls.window_segments", "expected 2 to 100 segments")
        if cfg.hls.remux_channel_bytes < 1 * _MIB or cfg.hls.remux_total_bytes < cfg.hls.remux_channel_bytes:
            self.fail("hls.remux_channel_bytes", "expected at least 1 MiB and at most hls.remux_total_bytes")
        if cfg.hls.timeshift and not 4 * cfg.hls.segment_duration <= cfg.hls.timeshift <= 7 * 86400:
            self.fail("hls.timeshift", "expected 0 (off) or a duration from 4 segments (hls.segment_duration) "
                      "to 7 days")
        if cfg.hls.timeshift_max_bytes < 1 * _MIB or cfg.hls.timeshift_total_bytes < cfg.hls.timeshift_max_bytes:
            self.fail("hls.timeshift_max_bytes", "expected at least 1 MiB and at most hls.timeshift_total_bytes")
        if cfg.hls.timeshift_dir is not None and not cfg.hls.timeshift_dir.strip():
            self.fail("hls.timeshift_dir", "expected a folder path, or null for one under the system temp dir")
        if cfg.hls.remux_start_timeout <= 0:
            self.fail("hls.remux_start_timeout", "expected a duration above 0")
        if not 0.1 <= cfg.hls.part_duration <= 2 or cfg.hls.part_duration >= cfg.hls.segment_duration:
            self.fail("hls.part_duration", "expected a duration from 0.1 s to 2 s, below hls.segment_duration")
        if cfg.ts.reconnect_attempts < 0:
            self.fail("ts.reconnect_attempts", "expected 0 or more")
        if cfg.ts.viewer_buffer_bytes < 188 * 64:
            self.fail("ts.viewer_buffer_bytes", "expected at least 12032 bytes (64 TS packets)")
        did = cfg.hdhomerun.device_id
        if did is not None and not re.fullmatch(r"[0-9A-Fa-f]{8}", did):
            self.fail("hdhomerun.device_id", f"expected 8 hex digits, got {did!r}")
        for i, key in enumerate(cfg.auth.api_keys):
            if len(key) < 8:
                self.fail(f"auth.api_keys[{i}]", "expected at least 8 characters")
        if cfg.auth.admin_key is not None and len(cfg.auth.admin_key) < 8:
            self.fail("auth.admin_key", "expected at least 8 characters")
        if cfg.auth.token_ttl < 30:
            self.fail("auth.token_ttl", "expected at least 30 s: a served playlist's segment URLs must stay "
                      "valid for a few target durations (NextPVR's segments are 2-10 s)")
        if not 0 <= cfg.auth.token_cache_entries <= 1_000_000:
            self.fail("auth.token_cache_entries", "expected an integer between 0 and 1000000")
        if cfg.auth.token_secret is not None and len(cfg.auth.token_secret) < 16:
            self.fail("auth.token_secret", "expected at least 16 characters")
        if cfg.ui.hlsjs_url is not None and not re.match(r"(https?://|/)", cfg.ui.hlsjs_url):
            self.fail("ui.hlsjs_url", f"expected an http(s):// URL or an absolute path, got {cfg.ui.hlsjs_url!r}")
        if cfg.ui.status_refresh < 1:
            self.fail("ui.status_refresh", "expected at least 1 s")
        for i, m in enumerate(cfg.recordings.path_map):
            if not os.path.isabs(m.local):
                self.fail(f"recordings.path_map[{i}].local", f"expected an absolute path, got {m.local!r}")


def _check_origin(loader: _Loader, key: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        loader.fail(key, f"expected an http:// or https:// URL, got {url!r}")
        return
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        loader.fail(key, f"expected a valid port in the URL, got {url!r}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
