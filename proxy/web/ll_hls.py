"""The HTTP side of Low-Latency HLS on remux playlists (``hls.low_latency``, RFC 8216bis 6.2.5).

- Blocking playlist reload: ``?_HLS_msn=N[&_HLS_part=M]`` holds the playlist request until segment
  N (or its part M) is complete, then answers at once; after three target durations it is 503, as
  6.2.5.2 says. An ``_HLS_msn`` more than two segments beyond the last complete one is 400 at once
  (a confused client must not hold a handler), so is ``_HLS_part`` without ``_HLS_msn``. The wait
  is the channel's one :class:`~proxy.packager.progress.Progress` event: no task, timer or queue
  per blocked client.
- ``?_HLS_skip=YES|v2``: the delta update (6.2.5.1), with ``EXT-X-SKIP``.
- Parts: ``/remux/remux.<channel>/<token>/<session>-<sequence>.<part>.ts`` (signed like segments).
  The hinted part (or the one after it) waits for the part to complete and then sends it; a part
  long gone, or further ahead, is 404 at once.

The LL query parameters are read from the playlist URL the player was given, whatever else it
carries (``api_key``, ``mode``): auth and mode handling ignore parameters they do not know.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

from aiohttp import hdrs, web

from proxy.errors import BadRequest, NotFound, ServiceUnavailable
from proxy.keys import CONFIG_KEY, METRICS_KEY
from proxy.packager.muxer import Muxer
from proxy.packager.segment import Segment, SegmentGone
from proxy.web.relay import PLAYLIST_TYPE, send

__all__ = ["ll_playlist", "remux_part"]

#: a blocked reload waits at most this many target durations (RFC 8216bis 6.2.5.2: "three times")
BLOCK_TARGETS = 3
#: a playlist reload that did not block changes with every part: never stored
_LIVE_CACHE_CONTROL = "no-cache"
#: parts, like segments, never change under their URL
_PART_CACHE_CONTROL = "public, max-age=3600, immutable"
_KEY_VARY = "Authorization, X-API-Key"
_TS = "video/mp2t"


def _number(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise BadRequest(f"{name} must be a non-negative integer", field=name)
    return int(value)


def blocking_request(request: web.Request) -> tuple[int | None, int | None, bool]:
    """(``_HLS_msn``, ``_HLS_part``, delta update asked for), validated."""
    msn = _number(request, "_HLS_msn")
    part = _number(request, "_HLS_part")
    if part is not None and msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn (RFC 8216bis 6.2.5.2)", field="_HLS_part")
    skip = request.query.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        raise BadRequest("_HLS_skip must be YES or v2", field="_HLS_skip")
    return msn, part, skip is not None


async def ll_playlist(request: web.Request, muxer: Muxer, client: Hashable, *,
                      start_programme: bool = False) -> web.Response:
    msn, part, skip = blocking_request(request)
    headers = {hdrs.CACHE_CONTROL: _LIVE_CACHE_CONTROL}
    if msn is not None:
        if msn > muxer.last_complete + 2:
            raise BadRequest(f"_HLS_msn={msn} is more than two segments beyond the live edge "
                             f"({muxer.last_complete}); reload the playlist without it", field="_HLS_msn")
        muxer.playlist(client)  # the blocked viewer counts as watching while it waits
        deadline = time.monotonic() + BLOCK_TARGETS * muxer.target
        if not await muxer.progress.until(lambda: muxer.reached(msn, part), deadline):
            raise ServiceUnavailable(f"segment {msn} did not arrive within {BLOCK_TARGETS} target durations")
        # the answer to a blocking reload names one point of the stream: a cache may keep it under its
        # full URL (only _HLS_msn/_HLS_part differ between viewers) for as long as it lists it
        headers[hdrs.CACHE_CONTROL] = f"public, max-age={max(1, muxer.target)}"
        if request.app[CONFIG_KEY].auth.api_keys:
            headers[hdrs.VARY] = _KEY_VARY
    body = muxer.playlist(client, start_programme=start_programme, skip=skip)
    return web.Response(body=body, content_type=PLAYLIST_TYPE, headers=headers)


async def remux_part(request: web.Request, muxer: Muxer | None, session: str, sequence: int,
                     index: int) -> web.StreamResponse:
    found = muxer.find_part(session, sequence, index) if muxer is not None else None
    if muxer is not None and found is None and session == muxer.session and muxer.part_coming(sequence, index):
        deadline = time.monotonic() + BLOCK_TARGETS * muxer.target

        def arrived() -> bool:
            assert muxer is not None
            return muxer.find_part(session, sequence, index) is not None or not muxer.part_coming(sequence, index)

        await muxer.progress.until(arrived, deadline)
        found = muxer.find_part(session, sequence, index)
    if muxer is None or found is None:
        raise NotFound("This part is not available (gone, or not the one hinted); reload the playlist.")
    segment, part = found
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: _TS, hdrs.CACHE_CONTROL: _PART_CACHE_CONTROL})
    resp.content_length = part.end - part.start
    return await send_segment(request, resp, muxer, segment, part.start, part.end)


async def send_segment(request: web.Request, resp: web.StreamResponse, muxer: Muxer, segment: Segment,
                       start: int = 0, end: int | None = None) -> web.StreamResponse:
    """Bytes ``start:end`` of a (possibly growing) remux segment: a whole segment or an LL-HLS part."""
    metrics = request.app.get(METRICS_KEY)
    muxer.sending += 1
    try:
        await resp.prepare(request)
        if request.method == hdrs.METH_HEAD:
            return resp
        try:
            async for chunk in segment.read(start, end):
                await send(request, resp, chunk)
                if metrics is not None:
                    metrics.sent_bytes.labels("hls").inc(len(chunk))
        except SegmentGone:
            # evicted mid-send (a very slow reader): the body is cut short, as a broken upstream would
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write_eof()
        return resp
    finally:
        muxer.sending -= 1
