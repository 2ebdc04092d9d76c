"""Configuration loading: raw YAML values -> the dataclasses of ``config_model``, with one problem
line per bad key.

``_Loader`` substitutes ``${VAR}`` (and ``${VAR:-default}``) from the environment inside string
values, converts each value by its field's type (sizes such as ``"4MiB"``, durations such as
``"30s"``), and runs the cross-field checks. It never raises on bad input: problems are collected
and ``config.parse_config`` raises them together as one ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from proxy.config_model import _MIB, Config, _Bytes, _Seconds

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
