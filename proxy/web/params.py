"""What handlers read from a request: ids, the profile, who is asking, the public base URL.

Shared by the live, lineup, HDHomeRun, API and recordings handlers; every malformed value
becomes a :class:`~proxy.errors.BadRequest` naming its field.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from urllib.parse import quote

from aiohttp import hdrs, web

from proxy.errors import BadRequest
from proxy.keys import CONFIG_KEY

__all__ = ["api_key_query", "client_key", "is_ascii_id", "parse_channel_id", "parse_id", "profile_of",
           "public_base"]

_HOST = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def is_ascii_id(value: str, max_digits: int = 10) -> bool:
    """1 to ``max_digits`` ASCII digits. ``str.isdigit()`` alone also takes ``²`` (which ``int()``
    refuses: a 500) and Arabic-Indic digits (which ``int()`` takes: an alias of an ASCII id)."""
    return 0 < len(value) <= max_digits and value.isascii() and value.isdigit()


def parse_id(value: str | None, field: str, what: str) -> int:
    """An id from a path or query: ASCII digits only, else a 400 naming ``field``."""
    if value is None or not is_ascii_id(value):
        raise BadRequest(f"{field} must be {what} (a number)", field=field)
    return int(value)


def parse_channel_id(value: str | None, field: str = "channel") -> int:
    return parse_id(value, field, "a NextPVR channel id")


def client_key(request: web.Request) -> Hashable:
    """Who is watching, approximately: address and player (for the viewer gauge only)."""
    return (request.remote, request.headers.get(hdrs.USER_AGENT, "")[:120])


def profile_of(request: web.Request, default: str | None = None) -> str:
    config = request.app[CONFIG_KEY]
    profile = request.query.get("profile", default or config.hls.profile)
    if profile not in config.hls.profiles:
        allowed = ", ".join(config.hls.profiles)
        raise BadRequest(f"profile must be one of {allowed}", field="profile")
    return profile


def _first(value: str | None) -> str:
    """The first (client-nearest) entry of a comma-separated forwarding header."""
    return (value or "").split(",")[0].strip()


def public_base(request: web.Request) -> str:
    """The proxy's absolute URL as the client reaches it, without a trailing slash."""
    server = request.app[CONFIG_KEY].server
    if server.public_base_url:
        return server.public_base_url.rstrip("/")
    scheme, host = request.scheme, request.host
    if server.trust_forwarded_headers:
        proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
        if proto:
            if proto not in ("http", "https"):
                raise BadRequest("X-Forwarded-Proto must be http or https", field="X-Forwarded-Proto")
            scheme = proto
        forwarded_host = _first(request.headers.get("X-Forwarded-Host"))
        if forwarded_host:
            if not _HOST.fullmatch(forwarded_host):
                raise BadRequest("X-Forwarded-Host is not a host name", field="X-Forwarded-Host")
            host = forwarded_host
    if not _HOST.fullmatch(host):
        raise BadRequest("the Host header is not a host name", field="Host")
    return f"{scheme}://{host}"


def api_key_query(request: web.Request) -> str:
    """``?api_key=...`` when the client authenticated by query (URLs it is given must carry it)."""
    key = request.query.get("api_key")
    return f"?api_key={quote(key, safe='')}" if key else ""
