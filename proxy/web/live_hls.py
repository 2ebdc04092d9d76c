"""Live TV as HLS, and the signed ``/hls/...`` URLs every rewritten playlist points at.

- ``GET /live/{channel_id}.m3u8[?profile=]`` and the Revenge alias
  ``GET /live.m3u8?channel={channel_id}``: the stitched live playlist of the channel's
  shared transcode (started on the first request).
- ``GET /hls/{scope}/{token}/{name}``: a segment or child playlist. The token is signed,
  expiring and bound to its scope (``live.<channel>.<profile>`` / ``rec.<id>.<profile>``),
  so a URL from one channel's playlist opens nothing else.
- ``GET /hls/blocked/{digest}/{name}``: what a playlist URI pointing outside NextPVR was
  rewritten to; always 403 (the proxy is not an open relay).
"""

from __future__ import annotations

import time

from aiohttp import hdrs, web

from proxy.errors import Forbidden, NotFound
from proxy.hls.tokens import TokenError
from proxy.hls.transcode import TranscodeKey, segment_key
from proxy.hls.urls import BLOCKED_SCOPE, HLS_PREFIX, parse_scope
from proxy.keys import CHANNELS_KEY, SEGMENTS_KEY, SIGNER_KEY, TRANSCODES_KEY
from proxy.web.params import client_key, parse_channel_id, profile_of
from proxy.web.relay import PLAYLIST_TYPE, send_entry

# the request helpers moved to params.py; re-exported for the imports that still name this module
__all__ = ["client_key", "parse_channel_id", "profile_of", "serve_transcode_playlist", "setup"]

_SEGMENT_CACHE_CONTROL = "private, max-age=3600"
_LIVE_PLAYLIST_CACHE_CONTROL = "no-cache"
_VOD_PLAYLIST_CACHE_CONTROL = "private, max-age=300"


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
    await request.app[CHANNELS_KEY].get(channel_id)  # 404 for an unknown channel, before any tuner
    return await serve_transcode_playlist(request, TranscodeKey("channel", channel_id, profile))


async def hls_resource(request: web.Request) -> web.StreamResponse:
    scope = request.match_info["scope"]
    token = request.match_info["token"]
    name = request.match_info["name"]
    if scope == BLOCKED_SCOPE:
        raise Forbidden("This URI points outside NextPVR; the proxy does not fetch it.")
    key = parse_scope(scope)
    if key is None:
        raise NotFound("no such stream")
    try:
        target = request.app[SIGNER_KEY].verify(scope, token, now=time.time())
    except TokenError as exc:
        raise Forbidden(f"This stream URL is not valid ({exc.reason}); reload the playlist.") from None
    manager = request.app[TRANSCODES_KEY]
    transcode = manager.find(scope)
    if transcode is None:
        if key.kind == "channel":
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
    app.router.add_get(HLS_PREFIX + "/{scope}/{token}/{name}", hls_resource)
