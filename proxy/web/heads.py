"""``HEAD`` on every live stream URL, answered at once without a tuner.

aiohttp answers a HEAD with the GET handler, which for a live stream means opening NextPVR's
``/live`` (or starting a transcode) and then never finishing: Jellyfin sends a HEAD to decide
whether an M3U stream can be shared (``video/MP2T``) and stalls tuning for about 100 s when it
hangs. These routes are registered before the GET routes, so they take every HEAD; they check
the channel exists (the cached line-up) and say what a GET would send.

- ``/live/{id}.ts``, ``/live?channel=``, ``/auto/v{number}``: ``video/MP2T``
- ``/live/{id}.m3u8``, ``/live.m3u8?channel=``, ``/recordings/{id}.m3u8``: the playlist type
"""

from __future__ import annotations

from aiohttp import hdrs, web

from proxy.errors import BadRequest
from proxy.keys import CHANNELS_KEY, CONFIG_KEY
from proxy.lineup.hdhr import transcode_behaviour
from proxy.web.params import parse_channel_id, parse_id
from proxy.web.relay import PLAYLIST_TYPE
from proxy.web.routes import Access, add_route

__all__ = ["TS_TYPE", "setup"]

#: the spelling Jellyfin compares with (case-insensitively) before it shares a stream
TS_TYPE = "video/MP2T"
_HEADERS = {hdrs.CACHE_CONTROL: "no-cache", hdrs.ACCEPT_RANGES: "none"}


def _head(content_type: str) -> web.Response:
    resp = web.Response(headers=_HEADERS)
    resp.headers[hdrs.CONTENT_TYPE] = content_type  # as is: aiohttp would lower-case it
    return resp


async def live_ts(request: web.Request) -> web.Response:
    raw = request.match_info.get("channel_id")
    channel_id = parse_channel_id(raw, "channel_id") if raw is not None else parse_channel_id(
        request.query.get("channel"))
    await request.app[CHANNELS_KEY].get(channel_id)
    return _head(TS_TYPE)


async def live_playlist(request: web.Request) -> web.Response:
    raw = request.match_info.get("channel_id")
    channel_id = parse_channel_id(raw, "channel_id") if raw is not None else parse_channel_id(
        request.query.get("channel"))
    profile = request.query.get("profile")
    if profile is not None and profile not in request.app[CONFIG_KEY].hls.profiles:
        raise BadRequest(f"profile must be one of {', '.join(request.app[CONFIG_KEY].hls.profiles)}",
                         field="profile")
    await request.app[CHANNELS_KEY].get(channel_id)
    return _head(PLAYLIST_TYPE)


async def recording_playlist(request: web.Request) -> web.Response:
    # no NextPVR call: the GET starts a transcode, which a HEAD must not
    parse_id(request.match_info["recording_id"], "recording_id", "a NextPVR recording id")
    return _head(PLAYLIST_TYPE)


async def auto_tune(request: web.Request) -> web.Response:
    transcode_behaviour(request.query.get("transcode"))  # 400 for a profile no HDHomeRun has
    await request.app[CHANNELS_KEY].by_number(request.match_info["number"])
    return _head(TS_TYPE)


def setup(app: web.Application) -> None:
    """Call before the GET routes are added (the first route matching path and method wins)."""
    head = hdrs.METH_HEAD
    add_route(app, head, "/live/{channel_id}.ts", live_ts, kind="ts")
    add_route(app, head, "/live", live_ts, kind="ts")
    add_route(app, head, "/live/{channel_id}.m3u8", live_playlist, kind="hls")
    add_route(app, head, "/live.m3u8", live_playlist, kind="hls")
    add_route(app, head, "/recordings/{recording_id}.m3u8", recording_playlist, kind="recording")
    if app[CONFIG_KEY].hdhomerun.enabled:
        add_route(app, head, r"/auto/v{number:[0-9]{1,6}(?:\.[0-9]{1,6})?}", auto_tune,
                  access=Access.HDHOMERUN, kind="ts")
