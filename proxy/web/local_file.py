"""Sending a local recording file with single byte ranges, chunk by chunk (never whole).

aiohttp's ``web.FileResponse`` was not used: it answers a multi-range or malformed
``Range`` with 416 where :func:`~proxy.recordings.ranges.parse_range` (and so the
NextPVR path of the same URL) ignores it with 200, and it swaps in a ``.gz``/``.br``
sibling of the file when the client accepts that encoding — a file
:class:`~proxy.recordings.files.RecordingFiles` never checked.

Validators: a strong ``ETag`` (mtime and size) and ``Last-Modified`` go out, and
``If-Range`` is honoured (a Range whose validator no longer matches gets the whole file,
RFC 9110 13.1.5), so a player resuming a download never splices two versions of a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiofiles
from aiohttp import hdrs, web

from proxy.keys import METRICS_KEY
from proxy.recordings.ranges import parse_range
from proxy.web.relay import send

__all__ = ["TS_TYPE", "send_local_file"]

log = logging.getLogger("proxy.recordings")

TS_TYPE = "video/mp2t"
#: bytes read from disk per step; the socket's drain() paces the loop
CHUNK = 256 * 1024


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _if_range_holds(value: str | None, st: os.stat_result) -> bool:
    """Whether a Range may be honoured given the request's ``If-Range`` (absent: yes)."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == _etag(st)  # weak validators never match (RFC 9110 13.1.5)
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    # RFC 9110 13.1.5: the date must equal the Last-Modified a 200 would carry
    return int(st.st_mtime) == int(date.timestamp())


async def send_local_file(request: web.Request, path: Path, *, cache_control: str
                          ) -> web.StreamResponse | None:
    """Serve ``path`` (already checked by RecordingFiles); None when it vanished meanwhile.

    Raises RangeNotSatisfiable (416 with ``Content-Range: bytes */size``) before any byte
    is sent.
    """
    loop = asyncio.get_running_loop()
    try:
        f = await aiofiles.open(path, "rb")
    except OSError:
        return None
    try:
        try:
            # the size and validators of what was opened, not of a name that may have been replaced
            st = await loop.run_in_executor(None, os.fstat, f.fileno())
        except OSError:
            return None
        size = st.st_size
        header = request.headers.get(hdrs.RANGE)
        if not _if_range_holds(request.headers.get(hdrs.IF_RANGE), st):
            header = None
        wanted = parse_range(header, size)
        headers = {hdrs.CACHE_CONTROL: cache_control, hdrs.ACCEPT_RANGES: "bytes", hdrs.ETAG: _etag(st)}
        start, length = 0, size
        if wanted is not None:
            start, length = wanted.start, wanted.end - wanted.start + 1
            headers[hdrs.CONTENT_RANGE] = wanted.content_range(size)
        try:
            await f.seek(start)
        except OSError:
            return None
        resp = web.StreamResponse(status=206 if wanted is not None else 200, headers=headers)
        resp.content_type = TS_TYPE
        resp.content_length = length
        resp.last_modified = st.st_mtime
        await resp.prepare(request)
        if request.method == hdrs.METH_HEAD or length == 0:
            await resp.write_eof()
            return resp
        metrics = request.app[METRICS_KEY]
        metrics.viewers.labels("recording").inc()
        left = length
        try:
            while left > 0:
                try:
                    chunk = await f.read(min(CHUNK, left))
                except OSError as exc:
                    log.warning("reading a recording file failed (%s)", exc.strerror or type(exc).__name__)
                    break
                if not chunk:
                    break
                await send(request, resp, chunk)  # a client that went away raises here, out of the handler
                left -= len(chunk)
                metrics.sent_bytes.labels("recording").inc(len(chunk))
        finally:
            metrics.viewers.labels("recording").dec()
        if left != 0:
            # the file shrank or broke after the headers went out: a short body with a
            # Content-Length would look complete to some clients, a cut connection does not
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write_eof()
        return resp
    finally:
        # shielded: a handler cancelled by a client that went away must still close the file
        await asyncio.shield(f.close())
