"""The web page for people: ``GET /`` and its files under ``/ui/`` (only when ``ui.enabled``).

- ``/`` and ``/ui/<file>``: plain HTML, CSS and JavaScript modules from ``proxy/web/ui/``
  (package data, no build step). They hold no data: everything the page shows comes from
  ``/api/``, so they are public even with ``auth.api_keys`` set (the page asks for a key first).
- ``/ui/settings.json``: what the page needs before it has a key (is a key needed, where
  hls.js is, how often to refresh) and nothing else.
- ``/ui/vendor/hls.min.js``: hls.js as npm installed it, never a copy in this repository.
  Found at ``ui.hlsjs_path``, else ``node_modules/hls.js`` next to the package (``npm ci`` in
  a checkout with an editable install), else the Docker image's copy at ``IMAGE_HLSJS``.
  ``ui.hlsjs_url`` sends the page elsewhere instead; with neither, the page plays natively
  where the browser can and otherwise offers the URL for VLC.

Every file is read once at start-up (a few hundred KiB in all) and served from memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from proxy.config import Config
from proxy.errors import NotFound
from proxy.keys import CONFIG_KEY
from proxy.web.routes import Access, add_route, claim

__all__ = ["IMAGE_HLSJS", "find_hlsjs", "setup"]

log = logging.getLogger("proxy.ui")

UI_DIR = Path(__file__).with_name("ui")
#: where the Dockerfile puts hls.js (copied from its build stage's ``npm ci``)
IMAGE_HLSJS = Path("/usr/share/nextpvr-hls-proxy/hls.js/hls.min.js")
_CHECKOUT_HLSJS = Path(__file__).resolve().parents[2] / "node_modules" / "hls.js" / "dist" / "hls.min.js"
HLSJS_ROUTE = "/ui/vendor/hls.min.js"
#: a file larger than this is not hls.js (the minified build is ~0.5 MB)
_HLSJS_MAX_BYTES = 8 * 1024 * 1024
_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str


_FILES_KEY = web.AppKey("ui_files", dict[str, _File])


def _file(body: bytes, content_type: str) -> _File:
    return _File(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def find_hlsjs(config: Config) -> Path | None:
    candidates = [Path(config.ui.hlsjs_path)] if config.ui.hlsjs_path else [_CHECKOUT_HLSJS, IMAGE_HLSJS]
    for path in candidates:
        if path.is_file():
            return path
    return None


def _load(config: Config) -> dict[str, _File]:
    files: dict[str, _File] = {}
    for path in sorted(UI_DIR.iterdir()):
        ctype = _TYPES.get(path.suffix)
        if ctype is not None and path.is_file():
            files[f"/ui/{path.name}"] = _file(path.read_bytes(), ctype)
    files["/"] = files.pop("/ui/index.html")
    if config.ui.hlsjs_url is None:
        hlsjs = find_hlsjs(config)
        if hlsjs is None:
            where = config.ui.hlsjs_path or "node_modules (run npm ci)"
            log.warning("hls.js not found at %s: the web page plays only where the browser has "
                        "native HLS", where)
        elif hlsjs.stat().st_size > _HLSJS_MAX_BYTES:
            log.warning("%s is larger than %d bytes, not serving it as hls.js", hlsjs, _HLSJS_MAX_BYTES)
        else:
            files[HLSJS_ROUTE] = _file(hlsjs.read_bytes(), "text/javascript")
    return files


def _hlsjs_url(config: Config, files: dict[str, _File]) -> str | None:
    if config.ui.hlsjs_url is not None:
        return config.ui.hlsjs_url
    return HLSJS_ROUTE if HLSJS_ROUTE in files else None


async def serve_file(request: web.Request) -> web.Response:
    found = request.app[_FILES_KEY].get(request.path)
    if found is None:
        raise NotFound("no such file")
    headers = {hdrs.ETAG: found.etag, hdrs.CACHE_CONTROL: "no-cache", **_SECURITY_HEADERS}
    if request.headers.get(hdrs.IF_NONE_MATCH) == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=found.content_type,
                        charset="utf-8" if found.content_type.startswith("text/") else None, headers=headers)


async def settings(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    body = {
        "auth": bool(config.auth.api_keys),
        "admin": config.auth.admin_key is not None,
        "hlsjs_url": _hlsjs_url(config, request.app[_FILES_KEY]),
        "status_refresh": config.ui.status_refresh,
        "pre_padding": config.dvr.pre_padding_minutes,
        "post_padding": config.dvr.post_padding_minutes,
        # the player offers "start over" (?start=programme) on remuxed channels with a timeshift window
        "timeshift": config.hls.timeshift > 0 and config.hls.mode != "transcode",
    }
    return web.json_response(body, headers={hdrs.CACHE_CONTROL: "no-store"})


async def _files_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_FILES_KEY] = _load(app[CONFIG_KEY])
    yield


def setup(app: web.Application) -> None:
    # the page's files hold no data (it asks for a key before it shows any): public, and claimed
    # even when the page is off, so that its 404s stay 404s (not 401s)
    claim(app, "/", access=Access.PUBLIC)
    claim(app, "/ui/", prefix=True, access=Access.PUBLIC)
    if not app[CONFIG_KEY].ui.enabled:
        return
    app.cleanup_ctx.append(_files_ctx)
    add_route(app, hdrs.METH_GET, "/", serve_file, access=Access.PUBLIC)
    add_route(app, hdrs.METH_GET, "/ui/settings.json", settings, access=Access.PUBLIC)
    add_route(app, hdrs.METH_GET, r"/ui/{name:[A-Za-z0-9_.-]+}", serve_file, access=Access.PUBLIC)
    add_route(app, hdrs.METH_GET, HLSJS_ROUTE, serve_file, access=Access.PUBLIC)
