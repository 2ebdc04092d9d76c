"""Live HLS packaged by the proxy itself (``hls.mode: remux|auto``), and its segment URLs.

- ``/live/{id}.m3u8`` (in ``live_hls.py``) asks :func:`remux_playlist` first unless the mode is
  ``transcode`` or the request names a ``?profile=``; ``None`` means "use the transcoder".
- ``?start=programme`` (timeshift on): the playlist carries ``EXT-X-START`` at the current
  programme's start; the ``X-Start-Over`` header says whether the window held it.
- ``GET /remux/remux.{channel}/{token}/{session}-{sequence}.ts``: a segment, sent chunk by chunk
  while it is still being written (``...-{sequence}.{part}.ts``: an LL-HLS part,
  ``ll_hls.py``); a timeshifted one that left memory is sent from its file.
  A segment that has left the store is 404; a token for
  another channel or segment, or an expired one, is 403.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from aiohttp import hdrs, web

from proxy.errors import BadRequest, Forbidden, NotFound
from proxy.hls.tokens import TokenError
from proxy.keys import CONFIG_KEY, REMUX_KEY, SIGNER_KEY
from proxy.packager.manager import Mode
from proxy.packager.muxer import Muxer
from proxy.packager.urls import PREFIX, parse_part_name, parse_segment_name, verify_segment
from proxy.web import ll_hls
from proxy.web.params import is_ascii_id
from proxy.web.relay import PLAYLIST_TYPE
from proxy.web.routes import Access, add_route, claim

__all__ = ["START_OVER_HEADER", "remux_playlist", "requested_mode", "setup", "start_over_note"]

log = logging.getLogger("proxy.hls")
#: the answer to ``?start=programme``: ``programme``, or ``oldest; <why>``, or ``unavailable; <why>``
START_OVER_HEADER: Final = "X-Start-Over"

_MODES: tuple[Mode, ...] = ("auto", "remux", "transcode")
#: a live media playlist changes every segment; segments never change (RFC 8216bis 6.2.2)
_PLAYLIST_CACHE_CONTROL = "no-cache"
_SEGMENT_CACHE_CONTROL = "public, max-age=3600"
_TS = "video/mp2t"


def requested_mode(request: web.Request) -> Mode:
    """``?mode=`` or ``hls.mode``; ``?profile=`` always means the transcoder."""
    value = request.query.get("mode")
    if value is None:
        mode: Mode = request.app[CONFIG_KEY].hls.mode
    elif value in _MODES:
        mode = _MODES[_MODES.index(value)]
    else:
        raise BadRequest(f"mode must be one of {', '.join(_MODES)}", field="mode")
    if "profile" in request.query:
        if value == "remux":
            raise BadRequest("?profile= asks for the transcoder; it cannot be combined with mode=remux",
                             field="profile")
        return "transcode"
    return mode


def _start_programme(request: web.Request) -> bool:
    value = request.query.get("start")
    if value is not None and value != "programme":
        raise BadRequest("start must be programme (begin at the current programme's start)", field="start")
    return value is not None


async def remux_playlist(request: web.Request, channel_id: int, mode: Mode, client: object) -> web.Response | None:
    start_over = _start_programme(request)
    muxer = await request.app[REMUX_KEY].session(channel_id, mode)
    if muxer is None:
        return None
    if muxer.low_latency:
        resp = await ll_hls.ll_playlist(request, muxer, client, start_programme=start_over)
    else:
        resp = web.Response(body=muxer.playlist(client, start_programme=start_over), content_type=PLAYLIST_TYPE,
                            headers={hdrs.CACHE_CONTROL: _PLAYLIST_CACHE_CONTROL})
    if start_over:
        resp.headers[START_OVER_HEADER] = start_over_note(muxer)
    return resp


def start_over_note(muxer: Muxer) -> str:
    """What ``?start=programme`` did, for the player's developer (the playlist cannot say it)."""
    if muxer.timeshift is None:
        return "unavailable; hls.timeshift is off"
    point = muxer.start_point()
    if point.programme is None:
        return "oldest; the guide names no current programme"
    if not point.held:
        log.info("channel %d: start over: the timeshift window does not reach back to the programme's start; "
                 "playback starts at the oldest segment", muxer.channel_id)
        return "oldest; the timeshift window does not reach back to the programme's start"
    return "programme"


async def remux_segment(request: web.Request) -> web.StreamResponse:
    scope, token, name = (request.match_info[k] for k in ("scope", "token", "name"))
    kind, _, channel = scope.partition(".")
    parsed = parse_segment_name(name)
    part = parse_part_name(name) if parsed is None else None
    if kind != "remux" or not is_ascii_id(channel) or (parsed is None and part is None):
        raise NotFound("no such segment")
    try:
        verify_segment(request.app[SIGNER_KEY], scope, token, name, now=time.time())
    except TokenError as exc:
        raise Forbidden(f"This segment URL is not valid ({exc.reason}); reload the playlist.") from None
    muxer = request.app[REMUX_KEY].find(int(channel))
    if part is not None:
        return await ll_hls.remux_part(request, muxer, *part)
    assert parsed is not None
    segment = muxer.segment(*parsed) if muxer is not None else None
    if muxer is not None and segment is None:
        on_disk = muxer.segment_file(*parsed)
        if on_disk is not None:
            # a timeshifted segment: sent from its file (sendfile), with the same headers
            return web.FileResponse(on_disk[1], headers={hdrs.CONTENT_TYPE: _TS,
                                                         hdrs.CACHE_CONTROL: _SEGMENT_CACHE_CONTROL})
    if muxer is None or segment is None:
        raise NotFound("This segment is no longer available; reload the playlist.")
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: _TS, hdrs.CACHE_CONTROL: _SEGMENT_CACHE_CONTROL})
    if segment.complete:
        resp.content_length = segment.size
    return await ll_hls.send_segment(request, resp, muxer, segment)


def setup(app: web.Application) -> None:
    # signed per-segment tokens, as under /hls/; the tuner label stays "ts" (the segments are TS)
    add_route(app, hdrs.METH_GET, PREFIX + "/{scope}/{token}/{name}", remux_segment, access=Access.TOKEN, kind="ts")
    claim(app, PREFIX + "/", prefix=True, access=Access.TOKEN)
