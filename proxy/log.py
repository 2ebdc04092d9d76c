"""Logging: one line per event, human or JSON, with secrets scrubbed.

The code never logs a PIN or a NextPVR session id on purpose. The redactor is the
second line of defence for what it cannot control: tracebacks of chained aiohttp
exceptions carry request URLs, and those URLs carry ``sid=``. Every handler the
proxy installs formats through :class:`RedactingFormatter`, which replaces

- ``sid=<value>`` / ``md5=<value>`` query parameters and ``client=<prefix>-<sid>`` values,
- every secret registered with :func:`register_secret` (the PIN, when it is long
  enough not to collide with ordinary numbers, API keys, the token secret),
- every session id NextPVR handed out (registered on login, a bounded set).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import deque
from typing import Any

__all__ = [
    "RedactingFormatter",
    "redact",
    "register_secret",
    "setup_logging",
]

_QUERY_SECRET = re.compile(r"((?:^|[?&;\s\"'])(?:sid|md5|api_key|apikey|pin)=)[^&\s\"'<>]*", re.IGNORECASE)
#: NextPVR sids are 32 hex digits (a GUID without dashes); a 32-hex run anywhere is scrubbed too
_HEX32 = re.compile(r"\b[0-9a-fA-F]{32}\b")
_MAX_SECRETS = 4096


class _SecretSet:
    """Exact strings to scrub. Bounded: the oldest entries go first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[str] = deque(maxlen=_MAX_SECRETS)
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._items:
                return
            self._items.append(value)
            ordered = sorted(self._items, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def sub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub("***", text) if pattern is not None else text


_SECRETS = _SecretSet()


def register_secret(value: str | None, *, min_length: int = 6) -> None:
    """Scrub ``value`` from every log line from now on.

    Short values (a 4-digit PIN) are not registered: replacing every ``0000`` in
    timestamps would mangle logs. Such values are never logged in the first place.
    """
    if value and len(value) >= min_length:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Remove secrets from ``text`` (also used for error bodies built from foreign text)."""
    text = _QUERY_SECRET.sub(r"\1***", text)
    text = _HEX32.sub("***", text)
    return _SECRETS.sub(text)


class RedactingFormatter(logging.Formatter):
    """Formats a record (message, exception, stack) and scrubs the whole result."""

    def __init__(self, *, json_lines: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        if not self.json_lines:
            return redact(super().format(record))
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("channel", "scope", "status", "method", "path", "remote", "duration_ms", "bytes"):
            if hasattr(record, key):
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO", fmt: str = "human") -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nextpvr_proxy", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(json_lines=fmt == "json"))
    handler._nextpvr_proxy = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's own access logger is replaced by ours (proxy.access), which knows route templates
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
