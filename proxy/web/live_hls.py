"""Live TV as HLS, and the signed ``/hls/...`` URLs every rewritten playlist points at.

- ``GET /live/{channel_id}.m3u8[?profile=][?mode=]`` and the Revenge alias
  ``GET /live.m3u8?channel={channel_id}``: the proxy's own remuxed playlist
  (``live_remux.py``, ``hls.mode: remux|auto``) or the stitched live playlist of the
  channel's shared transcode (started on the first request).
- ``GET /hls/{scope}/{token}/{name}``: a segment or child playlist. The token is signed,
  expiring and bound to its scope (``live.<channel>.<profile>`` / ``rec.<id>.<profile>``),
  so a URL from one channel's playlist opens nothing else.
- ``GET /hls/blocked/{digest}/{name}``: what a playlist URI pointing outside NextPVR was
  rewritten to; always 403 (the proxy is not an open relay).
"""

from __future__ import annotations

import re
import time
from collections.abc import Hashable

from aiohttp import hdrs, web

from proxy.errors import BadRequest, Forbidden, NotFound
from proxy.hls.tokens import TokenError
from proxy.hls.transcode import TranscodeKey, segment_key
from proxy.keys import CHANNELS_KEY, CONFIG_KEY, SEGMENTS_KEY, SIGNER_KEY, TRANSCODES_KEY
from proxy.web import live_remux
from proxy.web.relay import PLAYLIST_TYPE, send_entry

__all__ = ["parse_channel_id", "setup"]

_SCOPE = re.compile(r"(live|rec)\.(\d{1,10})\.([A-Za-z0-9_-]{1,32})")
_SEGMENT_CACHE_CONTROL = "private, max-age=3600"
_LIVE_PLAYLIST_CACHE_CONTROL = "no-cache"
_VOD_PLAYLIST_CACHE_CONTROL = "private, max-age=300"


def parse_channel_id(value: str | None, field: str = "channel") -> int:
    if value is None or not value.isdigit() or len(value) > 10:
        raise BadRequest(f"{field} must be a NextPVR channel id (a number)", field=field)
    return int(value)


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


async def serve_transcode_playlist(request: web.Request, key: TranscodeKey) -> web.Response:
    transcode = await request.app[TRANSCODES_KEY].get(key)
    body = await transcode.playlist(client_key(request))
    cache = _VOD_PLAYLIST_CACHE_CONTROL if transcode.is_vod else _LIVE_PLAYLIST_CACHE_CONTROL
    resp = web.Response(body=body, content_type=PLAYLIST_TYPE, headers={hdrs.CACHE_CONTROL: cache})
    if len(body) > 16384:
        resp.enable_compression()
    return resp


async def live_playlist(request: web.Request) -> web.Response:
    if "channel_id" in request.match_info:
        channel_id = parse_channel_id(request.match_info["channel_id"], "channel_id")
    else:
        channel_id = parse_channel_id(request.query.get("channel"))
    profile = profile_of(request)
    mode = live_remux.requested_mode(request)
    await request.app[CHANNELS_KEY].get(channel_id)  # 404 for an unknown channel, before any tuner
    if mode != "transcode":
        remuxed = await live_remux.remux_playlist(request, channel_id, mode, client_key(request))
        if remuxed is not None:
            return remuxed
    return await serve_transcode_playlist(request, TranscodeKey("channel", channel_id, profile))


async def hls_resource(request: web.Request) -> web.StreamResponse:
    scope = request.match_info["scope"]
    token = request.match_info["token"]
    name = request.match_info["name"]
    if scope == "blocked":
        raise Forbidden("This URI points outside NextPVR; the proxy does not fetch it.")
    match = _SCOPE.fullmatch(scope)
    if match is None:
        raise NotFound("no such stream")
    try:
        target = request.app[SIGNER_KEY].verify(scope, token, now=time.time())
    except TokenError as exc:
        raise Forbidden(f"This stream URL is not valid ({exc.reason}); reload the playlist.") from None
    manager = request.app[TRANSCODES_KEY]
    transcode = manager.find(scope)
    if transcode is None:
        live = match.group(1) == "live"
        key = TranscodeKey("channel" if live else "recording", int(match.group(2)), match.group(3))
        if live:
            cached = request.app[SEGMENTS_KEY].peek(segment_key(scope, target))
            if cached is None:
                raise NotFound("This live stream has stopped; reload the playlist.")
            return await send_entry(request, cached, name=name, kind="hls",
                                    cache_control=_SEGMENT_CACHE_CONTROL)
        # a VOD player never reloads its playlist: restart the recording's transcode for it
        transcode = await manager.get(key)
    if target.kind == "playlist":
        body = await transcode.child_playlist(target)
        return web.Response(body=body, content_type=PLAYLIST_TYPE,
                            headers={hdrs.CACHE_CONTROL: _LIVE_PLAYLIST_CACHE_CONTROL})
    entry = transcode.segment(target)
    return await send_entry(request, entry, name=name, kind="hls", cache_control=_SEGMENT_CACHE_CONTROL)


def setup(app: web.Application) -> None:
    app.router.add_get("/live/{channel_id}.m3u8", live_playlist)
    app.router.add_get("/live.m3u8", live_playlist)
    app.router.add_get("/hls/{scope}/{token}/{name}", hls_resource)
