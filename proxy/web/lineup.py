"""What players are pointed at: ``/playlist.m3u``, ``/epg.xml``, ``/icons/{id}``, ``/recordings.m3u``.

Every URL these documents contain is absolute: from ``server.public_base_url`` when it is
configured, else from the request's ``Host`` (and ``X-Forwarded-Proto``/``X-Forwarded-Host``
only with ``server.trust_forwarded_headers``, since anyone can send them). A client that
fetched a playlist with ``?api_key=`` gets the same key on every URL inside it.
"""

from __future__ import annotations

import email.utils

from aiohttp import hdrs, web

from proxy.errors import BadRequest, NotFound, ServiceUnavailable
from proxy.keys import CHANNELS_KEY, CLIENT_KEY, CONFIG_KEY, GROUPS_KEY, GUIDE_KEY, ICONS_KEY
from proxy.lineup.guide import GuideCache
from proxy.lineup.m3u import StreamFormat, channel_playlist, recordings_playlist
from proxy.nextpvr.models import RecordingStatus
from proxy.web.health import ReadinessCheck
from proxy.web.params import api_key_query, parse_channel_id, public_base
from proxy.web.relay import etag_matches, send
from proxy.web.routes import add_route

# the keys live in keys.py, api_key_query and public_base in params.py: re-exported for existing imports
__all__ = [
    "GROUPS_KEY",
    "GUIDE_KEY",
    "ICONS_KEY",
    "api_key_query",
    "etag_matches",
    "guide_readiness",
    "public_base",
    "setup",
]


M3U_TYPE = "audio/x-mpegurl"
_ICON_CACHE_CONTROL = "public, max-age=86400"
#: the guide changes about hourly; clients revalidate (cheap with ETag) instead of guessing
_GUIDE_CACHE_CONTROL = "no-cache"
_GUIDE_RETRY_AFTER = "10"
_MAX_ETAGS = 32




def _not_modified_since(request: web.Request, last_modified: float) -> bool:
    if hdrs.IF_NONE_MATCH in request.headers:
        return False  # RFC 9110 13.1.3: If-None-Match wins
    header = request.headers.get(hdrs.IF_MODIFIED_SINCE)
    if not header:
        return False
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    return since.tzinfo is not None and int(last_modified) <= since.timestamp()


def accepts_gzip(request: web.Request) -> bool:
    """Accept-Encoding names gzip (or ``*``) with a q-value above zero."""
    verdict: dict[str, bool] = {}
    for item in request.headers.get(hdrs.ACCEPT_ENCODING, "").split(",")[:_MAX_ETAGS]:
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        verdict[name.strip().lower()] = q > 0
    if "gzip" in verdict:
        return verdict["gzip"]
    return verdict.get("*", False)


def stream_format(request: web.Request) -> StreamFormat:
    value = request.query.get("format", request.app[CONFIG_KEY].guide.default_stream_format)
    if value == "hls":
        return "hls"
    if value == "ts":
        return "ts"
    raise BadRequest("format must be hls or ts", field="format")


def _start_over(request: web.Request, fmt: StreamFormat) -> bool:
    """``?start=programme``: the HLS line-up whose streams begin at the programme's start."""
    value = request.query.get("start")
    if value is None:
        return False
    if value != "programme":
        raise BadRequest("start must be programme", field="start")
    if fmt != "hls" or not request.app[CONFIG_KEY].hls.timeshift:
        raise BadRequest("start=programme needs format=hls and hls.timeshift (the remux packager's window)",
                         field="start")
    return True


async def playlist_m3u(request: web.Request) -> web.Response:
    fmt = stream_format(request)
    start_over = _start_over(request, fmt)
    base, query = public_base(request), api_key_query(request)
    channels = await request.app[CHANNELS_KEY].channels()
    groups = await request.app[GROUPS_KEY].memberships()
    text = channel_playlist(channels, groups, base=base, fmt=fmt, query=query, start_over=start_over)
    return web.Response(text=text, content_type=M3U_TYPE, charset="utf-8",
                        headers={hdrs.CACHE_CONTROL: "no-cache"})


async def recordings_m3u(request: web.Request) -> web.Response:
    base, query = public_base(request), api_key_query(request)
    recordings = await request.app[CLIENT_KEY].recording_list("ready")
    ready = [r for r in recordings if r.status is RecordingStatus.READY]
    text = recordings_playlist(ready, base=base, query=query)
    return web.Response(text=text, content_type=M3U_TYPE, charset="utf-8",
                        headers={hdrs.CACHE_CONTROL: "no-cache"})


async def epg_xml(request: web.Request) -> web.StreamResponse:
    guide = request.app[GUIDE_KEY]
    document = guide.document
    if document is None:
        why = f" (last attempt: {guide.last_error})" if guide.last_error else ""
        raise ServiceUnavailable(f"The guide is still being built{why}; try again shortly.",
                                 headers={"Retry-After": _GUIDE_RETRY_AFTER})
    rendition = await document.rendition(public_base(request), api_key_query(request))
    gzip = accepts_gzip(request)
    headers = {
        hdrs.ETAG: rendition.gzip_etag if gzip else rendition.etag,
        hdrs.LAST_MODIFIED: email.utils.formatdate(int(document.built_at), usegmt=True),
        hdrs.CACHE_CONTROL: _GUIDE_CACHE_CONTROL,
        hdrs.VARY: "Accept-Encoding",
    }
    if etag_matches(request, rendition.etag, rendition.gzip_etag) or _not_modified_since(
            request, document.built_at):
        return web.Response(status=304, headers=headers)
    resp = web.StreamResponse(headers=headers)
    resp.content_type = "application/xml"
    resp.charset = "utf-8"
    if gzip:
        parts: tuple[bytes, ...] = document.gzip_parts(rendition)
        resp.headers[hdrs.CONTENT_ENCODING] = "gzip"
    else:
        parts = (rendition.head, document.body)
    resp.content_length = sum(len(p) for p in parts)
    await resp.prepare(request)
    if request.method != hdrs.METH_HEAD:
        for part in parts:
            await send(request, resp, part)
    await resp.write_eof()
    return resp


async def icon(request: web.Request) -> web.Response:
    channel_id = parse_channel_id(request.match_info["channel_id"], "channel_id")
    channel = await request.app[CHANNELS_KEY].get(channel_id)
    found = await request.app[ICONS_KEY].get(channel_id) if channel.has_icon else None
    if found is None:
        raise NotFound(f"NextPVR has no icon for channel {channel_id}")
    headers = {hdrs.ETAG: found.etag, hdrs.CACHE_CONTROL: _ICON_CACHE_CONTROL}
    if etag_matches(request, found.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=found.content_type, headers=headers)


def guide_readiness(guide: GuideCache) -> ReadinessCheck:
    """A /readyz check: the first guide build has finished (players fetch /epg.xml at once).

    Register it with ``app[READINESS_KEY].extra["guide"] = guide_readiness(app[GUIDE_KEY])``
    once both exist (this module's cleanup context runs after health's).
    """

    async def check() -> tuple[bool, str]:
        document = guide.document
        if document is None:
            why = f": {guide.last_error}" if guide.last_error else ""
            return False, f"the first guide build has not finished{why}"
        detail = f"ok ({document.programmes} programmes)"
        if guide.last_error:
            detail += f"; the latest rebuild failed: {guide.last_error}"
        return True, detail

    return check


def setup(app: web.Application) -> None:
    add_route(app, hdrs.METH_GET, "/playlist.m3u", playlist_m3u)
    add_route(app, hdrs.METH_GET, "/recordings.m3u", recordings_m3u, kind="recording")
    add_route(app, hdrs.METH_GET, "/epg.xml", epg_xml)
    add_route(app, hdrs.METH_GET, "/icons/{channel_id}", icon)
