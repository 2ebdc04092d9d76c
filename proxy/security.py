"""Client authentication: API keys for playlists, lineup and API; signed tokens for segments.

Who needs what (``access_level``: each route declares its level where it is added, see
:mod:`proxy.web.routes`):

- **public**: ``/healthz``, ``/readyz``, ``/metrics``, CORS preflights — probes and
  Prometheus must work without credentials (they expose no secret); the web page's own files
  (``/`` and ``/ui/...``), which hold no data: the page asks for a key before it shows anything.
- **token**: ``/hls/...`` and ``/remux/...`` (remuxed segments and LL-HLS parts) — every
  rewritten URI carries its own signed, expiring token bound to its channel or recording, so
  players that cannot send headers (or were given ``?api_key=`` in the playlist URL) still work
  and a leaked segment URL stops working.
- **hdhomerun**: ``/discover.json``, ``/lineup.json``, ``/lineup_status.json``,
  ``/lineup.post``, ``/device.xml``, ``/auto/v*`` — Plex, Jellyfin and Emby cannot send a
  key to an HDHomeRun, so these are open; turn them off with ``hdhomerun.enabled: false``
  on anything but a trusted LAN.
- **key**: everything else, when ``auth.api_keys`` is set: ``X-API-Key: <key>``,
  ``Authorization: Bearer <key>``, or ``?api_key=<key>`` (for players that take only a URL).
  The admin key is accepted wherever an API key is.
- **admin**: ``POST``/``DELETE`` under ``/api/`` additionally need ``auth.admin_key``
  (checked by the API handlers; with no admin key configured, write actions are off).

Keys are compared with :func:`hmac.compare_digest` against every configured key, so the
time taken does not tell which key (or how much of one) matched.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web

from proxy.config import Config
from proxy.errors import AuthRequired
from proxy.keys import CONFIG_KEY
from proxy.web.routes import Access, route_policy

__all__ = [
    "Access",
    "access_level",
    "auth_middleware",
    "is_loopback",
    "key_matches",
    "presented_key",
    "warn_if_exposed",
]

log = logging.getLogger("proxy.security")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: a key longer than this is not compared at all (bounded work per request)
_MAX_KEY_CHARS = 512


def access_level(request: web.Request) -> Access:
    if request.method == hdrs.METH_OPTIONS:
        return Access.PUBLIC  # a CORS preflight carries no credentials
    return route_policy(request).access


def presented_key(request: web.Request, *, query: bool = True) -> str | None:
    """The key a client sent: header, bearer token or (``query``) the ``api_key`` parameter,
    in that order. Admin actions pass ``query=False``: their key never goes into a URL."""
    key = request.headers.get("X-API-Key")
    if key is None:
        auth = request.headers.get(hdrs.AUTHORIZATION, "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    if key is None and query:
        key = request.query.get("api_key")
    return key


def key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """Constant-time membership test (every key is compared, no early exit)."""
    if presented is None or len(presented) > _MAX_KEY_CHARS:
        return False
    try:
        # aiohttp decodes header bytes that are not UTF-8 to lone surrogates (``\xff`` -> ``\udcff``),
        # which ``encode()`` refuses: such a key is simply not one of ours (401, not a 500)
        given = presented.encode()
    except UnicodeEncodeError:
        return False
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def _accepted_keys(config: Config) -> list[str]:
    keys = list(config.auth.api_keys)
    if config.auth.admin_key:
        keys.append(config.auth.admin_key)
    return keys


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    if config.auth.api_keys and access_level(request) is Access.KEY:
        presented = presented_key(request)
        if not key_matches(presented, _accepted_keys(config)):
            message = "API key required" if presented is None else "API key not accepted"
            raise AuthRequired(message, headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="nextpvr-hls-proxy"'})
    return await handler(request)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(config: Config) -> bool:
    """Log a prominent warning when the proxy listens beyond loopback without authentication."""
    if is_loopback(config.server.host):
        return False
    if not config.auth.api_keys:
        log.warning(
            "!!! listening on %s with authentication OFF: anyone who can reach this address can watch "
            "TV through your NextPVR. Set auth.api_keys (and auth.admin_key for DVR actions). !!!",
            config.server.host)
        return True
    if config.hdhomerun.enabled:
        log.warning("HDHomeRun routes are served without an API key (HDHomeRun clients cannot send "
                    "one); set hdhomerun.enabled: false unless %s is a trusted network",
                    config.server.host)
    return False
