"""Recordings: ``GET/HEAD /recordings/{id}`` (MPEG-TS with ranges) and ``GET /recordings/{id}.m3u8`` (HLS).

``/recordings/{id}`` serves the recording NextPVR has under that id:

- **From disk** when ``recordings.path_map`` maps the file NextPVR reports to a local
  file (:class:`~proxy.recordings.files.RecordingFiles`: never outside the folder) and the
  recording is complete. Ranges are answered here (``proxy/web/local_file.py``).
- **From NextPVR** (``/live?recording=``) otherwise, including when the mapped file is
  missing or refused. The client's ``Range`` is normalised and forwarded; NextPVR's status
  (200/206/416), ``Content-Length``, ``Content-Range`` and ``Accept-Ranges`` are relayed.
- **Growing** (status RECORDING): always from NextPVR with ``growing=true``; no
  ``Content-Length`` reaches the client and bytes keep coming as NextPVR appends them.
  Only ``bytes=N-`` can be honoured on a file whose end is unknown, so it is the only
  range forwarded (NextPVR answers 206 ``bytes N-M/*``, M its current end, and goes on
  past M); ``bytes=N-M`` and suffixes are ignored as ``parse_range(header, None)`` says
  (200 from byte 0, RFC 9110 lets a server ignore Range). A start beyond the current end
  is NextPVR's 416 with its current size: the client may retry once more is recorded.

Recordings with no media yet (pending, conflict) are 404 without asking for a stream.
Lookups (``recording.list&recording_id=``) are remembered for a few seconds, because a
seeking player sends a burst of range requests for one recording.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import hdrs, web
from cachetools import TTLCache

from proxy.errors import RangeNotSatisfiable, RecordingNotFound
from proxy.hls.transcode import TranscodeKey
from proxy.keys import CLIENT_KEY, CONFIG_KEY
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.models import Recording, RecordingStatus
from proxy.nextpvr.streams import UpstreamStream
from proxy.recordings.files import RecordingFiles
from proxy.recordings.ranges import parse_range
from proxy.web.live_hls import serve_transcode_playlist
from proxy.web.local_file import TS_TYPE, send_local_file
from proxy.web.params import parse_id, profile_of
from proxy.web.relay import relay_upstream
from proxy.web.routes import add_route

__all__ = ["RECORDINGS_KEY", "RecordingLookup", "Recordings", "setup", "upstream_range"]

log = logging.getLogger("proxy.recordings")

#: a finished recording never changes (it can only be deleted)
COMPLETE_CACHE_CONTROL = "private, max-age=3600"
GROWING_CACHE_CONTROL = "no-store"
_NO_MEDIA = (RecordingStatus.PENDING, RecordingStatus.CONFLICT)
#: larger than any file, for checking a Range header's shape without knowing the size
_ANY_SIZE = 2**62
class RecordingLookup:
    """``recording_get`` remembered for ``ttl`` seconds (bounded by ``maxsize`` ids).

    A stale entry is harmless: a recording that finished up to ``ttl`` ago is still
    streamed as growing (NextPVR then just ends the body with the file).
    """

    def __init__(self, client: NextPVRClient, *, ttl: float = 5.0, maxsize: int = 256) -> None:
        self._client = client
        self._cache: TTLCache[int, Recording] = TTLCache(maxsize=maxsize, ttl=ttl)

    async def get(self, recording_id: int) -> Recording:
        rec = self._cache.get(recording_id)
        if rec is None:
            rec = await self._client.recording_get(recording_id)
            self._cache[recording_id] = rec
        return rec


@dataclass(frozen=True, slots=True)
class Recordings:
    lookup: RecordingLookup
    files: RecordingFiles


RECORDINGS_KEY = web.AppKey("recordings", Recordings)


def _recording_id(request: web.Request) -> int:
    return parse_id(request.match_info["recording_id"], "recording_id", "a NextPVR recording id")


async def _find(request: web.Request, recording_id: int) -> Recording:
    rec = await request.app[RECORDINGS_KEY].lookup.get(recording_id)
    if rec.status in _NO_MEDIA:
        raise RecordingNotFound(f"recording {recording_id} has no media yet ({rec.status.value})")
    return rec


def upstream_range(header: str | None, *, growing: bool) -> str | None:
    """The ``Range`` to send NextPVR for the client's ``header``, normalised; None: send none.

    Whatever :func:`parse_range` would ignore is not forwarded either, so NextPVR and the
    disk path answer the same header the same way.
    """
    if header is None:
        return None
    try:
        wanted = parse_range(header, None if growing else _ANY_SIZE)
    except RangeNotSatisfiable:
        # ``bytes=-0`` or an absurd start: only NextPVR knows the size a 416 must name
        return header.strip()
    if wanted is None:
        return None
    if wanted.is_open:
        return f"bytes={wanted.start}-"
    if wanted.end < _ANY_SIZE - 1:
        return f"bytes={wanted.start}-{wanted.end}"
    # runs to the end: ``bytes=N-``, or a suffix, whose start moves with the size
    bigger = parse_range(header, 2 * _ANY_SIZE)
    if bigger is not None and bigger.start != wanted.start:
        return f"bytes=-{_ANY_SIZE - wanted.start}"
    return f"bytes={wanted.start}-"


async def _open_upstream(client: NextPVRClient, rec: Recording, range_header: str | None) -> UpstreamStream:
    """``/live?recording=`` with the main session; logs in again once when NextPVR refuses the
    stream with a 500 (its answer to a sid it no longer knows, nextpvr-api.md I-J46)."""
    headers: dict[str, str] | None = {hdrs.RANGE: range_header} if range_header is not None else None
    return await client.open_session_stream(
        lambda sid, client_id: client.recording_stream_url(rec.id, sid, client_id, growing=rec.growing),
        headers=headers)


async def recording_stream(request: web.Request) -> web.StreamResponse:
    rec = await _find(request, _recording_id(request))
    files = request.app[RECORDINGS_KEY].files
    if files.enabled and rec.file and rec.status is RecordingStatus.READY:
        path = await files.resolve_async(rec.file)
        if path is not None:
            resp = await send_local_file(request, path, cache_control=COMPLETE_CACHE_CONTROL)
            if resp is not None:
                return resp
    range_header = upstream_range(request.headers.get(hdrs.RANGE), growing=rec.growing)
    stream = await _open_upstream(request.app[CLIENT_KEY], rec, range_header)
    # NextPVR serves finished recordings with ranges even where it does not say so; a growing one
    # has no final length
    return await relay_upstream(
        request, stream, kind="recording", content_type=TS_TYPE,
        cache_control=GROWING_CACHE_CONTROL if rec.growing else COMPLETE_CACHE_CONTROL,
        content_length=not rec.growing, accept_ranges=not rec.growing, watched="recording")


async def recording_playlist(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    profile = profile_of(request, config.recordings.hls_profile)
    rec = await _find(request, _recording_id(request))  # 404 before any transcode is started
    return await serve_transcode_playlist(request, TranscodeKey("recording", rec.id, profile))


def setup(app: web.Application) -> None:
    add_route(app, hdrs.METH_GET, "/recordings/{recording_id}.m3u8", recording_playlist, kind="recording")
    add_route(app, hdrs.METH_GET, "/recordings/{recording_id}", recording_stream, kind="recording")
