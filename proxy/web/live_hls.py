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

import asyncio
import hashlib
import logging
import time

from aiohttp import hdrs, web

from proxy.errors import Forbidden, NotFound, ProxyError
from proxy.hls.segments import SegmentEntry
from proxy.hls.tokens import TokenError
from proxy.hls.transcode import TranscodeKey, segment_key
from proxy.hls.urls import BLOCKED_SCOPE, HLS_PREFIX, parse_scope
from proxy.keys import CHANNELS_KEY, CONFIG_KEY, SEGMENTS_KEY, SIGNER_KEY, TRANSCODES_KEY
from proxy.web import live_remux
from proxy.web.params import client_key, parse_channel_id, profile_of
from proxy.web.relay import PLAYLIST_TYPE, etag_matches, send_entry
from proxy.web.routes import Access, add_route, claim

# the request helpers moved to params.py; re-exported for the imports that still name this module
__all__ = ["client_key", "parse_channel_id", "profile_of", "serve_transcode_playlist", "setup"]

log = logging.getLogger("proxy.hls")

#: a segment URL names one immutable segment for every viewer of a channel (the signed token is its
#: credential), so any HTTP cache in front may keep it and hand it to everyone (deploy/nginx/replicas.conf)
_SEGMENT_CACHE_CONTROL = "public, max-age=86400, immutable"
_CHILD_PLAYLIST_CACHE_CONTROL = "no-cache"
_VOD_PLAYLIST_CACHE_CONTROL = "private, max-age=300"
#: live playlists carry API-key-protected segment URLs: a cache must keep one copy per key it was sent
_KEY_VARY = "Authorization, X-API-Key"
#: starts begun by a segment request this replica had no transcode for (after a fail-over); bounded
_WARM_STARTS = 16
_WARM_KEY = web.AppKey("hls_warm_starts", set[asyncio.Task[None]])


def live_playlist_cache_control(target_duration: float) -> str:
    """At most half a segment: a cache in front collapses a channel's viewers into about two requests
    per segment, and no viewer sees the live edge later than half a segment (CDN practice for HLS)."""
    half = int(target_duration // 2)
    return f"public, max-age={half}" if half >= 1 else "no-cache"


async def serve_transcode_playlist(request: web.Request, key: TranscodeKey) -> web.Response:
    transcode = await request.app[TRANSCODES_KEY].get(key)
    body = await transcode.playlist(client_key(request))
    if transcode.is_vod:
        headers = {hdrs.CACHE_CONTROL: _VOD_PLAYLIST_CACHE_CONTROL}
    else:
        headers = {hdrs.CACHE_CONTROL: live_playlist_cache_control(transcode.target_duration)}
        if request.app[CONFIG_KEY].auth.api_keys:
            headers[hdrs.VARY] = _KEY_VARY
    resp = web.Response(body=body, content_type=PLAYLIST_TYPE, headers=headers)
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
                # a playlist of a transcode that is gone, or of another replica that died: start the
                # channel here, so that the player's next reload of the same playlist URL finds it running
                _warm_start(request.app, key)
                raise NotFound("This live stream has stopped; reload the playlist.")
            return await send_segment(request, cached, name=name)
        # a VOD player never reloads its playlist: restart the recording's transcode for it
        transcode = await manager.get(key)
    if target.kind == "playlist":
        body = await transcode.child_playlist(target)
        return web.Response(body=body, content_type=PLAYLIST_TYPE,
                            headers={hdrs.CACHE_CONTROL: _CHILD_PLAYLIST_CACHE_CONTROL})
    return await send_segment(request, transcode.segment(target), name=name)


async def send_segment(request: web.Request, entry: SegmentEntry, *, name: str) -> web.StreamResponse:
    """A shared segment with a strong validator: the URL names the bytes, so the ETag is the URL's."""
    etag = '"' + hashlib.blake2b(request.path.encode(), digest_size=12).hexdigest() + '"'
    if etag_matches(request, etag):
        return web.Response(status=304, headers={hdrs.ETAG: etag, hdrs.CACHE_CONTROL: _SEGMENT_CACHE_CONTROL})
    return await send_entry(request, entry, name=name, kind="hls", cache_control=_SEGMENT_CACHE_CONTROL,
                            etag=etag)


def _warm_start(app: web.Application, key: TranscodeKey) -> None:
    tasks = app[_WARM_KEY]
    if len(tasks) >= _WARM_STARTS or any(t.get_name() == str(key) for t in tasks):
        return
    task = asyncio.get_running_loop().create_task(_start_quietly(app, key), name=str(key))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _start_quietly(app: web.Application, key: TranscodeKey) -> None:
    try:
        await app[TRANSCODES_KEY].get(key)
    except ProxyError as exc:  # no tuner, NextPVR down: the playlist request will say so
        log.info("%s: start after a stale segment request failed (%s)", key.kind, exc.message)


async def _cancel_warm_starts(app: web.Application) -> None:
    tasks: list[asyncio.Task[None]] = [*app[_WARM_KEY]]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def setup(app: web.Application) -> None:
    app[_WARM_KEY] = set()
    app.on_shutdown.append(_cancel_warm_starts)
    add_route(app, hdrs.METH_GET, "/live/{channel_id}.m3u8", live_playlist, kind="hls")
    add_route(app, hdrs.METH_GET, "/live.m3u8", live_playlist, kind="hls")
    # every rewritten URI carries its own signed token: no key, and an unknown one is a 404
    add_route(app, hdrs.METH_GET, HLS_PREFIX + "/{scope}/{token}/{name}", hls_resource,
              access=Access.TOKEN, kind="hls")
    claim(app, HLS_PREFIX + "/", prefix=True, access=Access.TOKEN)
