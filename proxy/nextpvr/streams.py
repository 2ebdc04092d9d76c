"""Open NextPVR streams (``/live``, transcode playlists and segments) and read bodies safely.

This is the stream half of the NextPVR boundary; :mod:`proxy.nextpvr.transport` is the API half.
Together they are the only place where aiohttp client exceptions and timeouts are caught. Here
they leave as :mod:`proxy.errors` exceptions, chained with ``from``:

- connection refused, reset, DNS, broken body     -> :class:`NextPVRUnreachable`
- connect timeout, a silence longer than sock_read -> :class:`NextPVRTimeout`
- a body over its byte limit                       -> :class:`UpstreamTooLarge`
- 404 "no tuner" / recording / channel / other     -> :class:`NoTunerAvailable`, :class:`RecordingNotFound`,
                                                      :class:`ChannelNotFound`, :class:`NotFound`
- 416 with the size, any other non-2xx status      -> :class:`RangeNotSatisfiable`, :class:`NextPVRFailed`

Streams never have a total timeout, only ``sock_connect`` and ``sock_read``, because a live
stream or a long recording may run for hours. Messages never name the URL or the sid.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from proxy.errors import (
    ChannelNotFound,
    NextPVRFailed,
    NextPVRTimeout,
    NextPVRUnreachable,
    NotFound,
    NoTunerAvailable,
    ProxyError,
    RangeNotSatisfiable,
    RecordingNotFound,
    UpstreamTooLarge,
)

__all__ = ["UpstreamBody", "UpstreamStream", "iter_body", "open_stream", "read_limited", "says_no_tuner"]

#: how much of an error body is read to tell "no tuner" from other 404s
_ERROR_PEEK_BYTES = 4096
_STREAM_CHUNK = 64 * 1024
_NO_TUNER = re.compile(rb"no\s+tuner", re.IGNORECASE)
_CONTENT_RANGE_SIZE = re.compile(r"\*/(\d+)")


class UpstreamBody(Protocol):
    """An open upstream response, as the NextPVR client hands it over."""

    status: int
    content_type: str
    content_length: int | None

    def iter_chunks(self, chunk_size: int = ...) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


def says_no_tuner(text: str | bytes) -> bool:
    """Whether NextPVR's error text means "no tuner" (it has no code for it, only words)."""
    return _NO_TUNER.search(text if isinstance(text, bytes) else text.encode("utf-8", "replace")) is not None


# -- bodies ------------------------------------------------------------------------


async def iter_body(resp: aiohttp.ClientResponse, chunk_size: int = _STREAM_CHUNK) -> AsyncIterator[bytes]:
    """The body of ``resp`` in chunks of at most ``chunk_size``; failures become ProxyErrors.

    A body that breaks off (reset, truncated Content-Length) raises NextPVRUnreachable;
    a silence longer than ``sock_read`` raises NextPVRTimeout. A clean end just stops.
    """
    while True:
        try:
            chunk = await resp.content.read(chunk_size)
        except TimeoutError as exc:
            raise NextPVRTimeout("NextPVR stopped sending data") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise NextPVRUnreachable(f"the connection to NextPVR broke ({type(exc).__name__})") from exc
        if not chunk:
            return
        yield chunk


async def read_limited(resp: aiohttp.ClientResponse, max_bytes: int, *, what: str = "answer") -> bytes:
    """The whole body of ``resp``, refusing more than ``max_bytes`` (UpstreamTooLarge)."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise UpstreamTooLarge(f"NextPVR's {what} is larger than {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in iter_body(resp):
        size += len(chunk)
        if size > max_bytes:
            raise UpstreamTooLarge(f"NextPVR's {what} is larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


class UpstreamStream:
    """An open NextPVR stream response (``/live``, transcode playlists and segments).

    Use as ``async with await client.open_stream(url) as stream`` or call :meth:`close`.
    Reading goes through :meth:`iter_chunks` / :meth:`read`, which raise ProxyErrors.
    """

    __slots__ = ("content_length", "content_type", "headers", "response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.status: int = response.status
        self.content_type: str = response.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
        self.content_length: int | None = response.content_length
        self.headers = response.headers

    def iter_chunks(self, chunk_size: int = _STREAM_CHUNK) -> AsyncIterator[bytes]:
        return iter_body(self.response, chunk_size)

    async def read(self, max_bytes: int) -> bytes:
        return await read_limited(self.response, max_bytes, what="stream")

    async def close(self) -> None:
        # an unfinished body closes the connection instead of returning it to the pool
        self.response.release()

    async def __aenter__(self) -> UpstreamStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# -- opening ---------------------------------------------------------------------


async def open_stream(
    http: aiohttp.ClientSession,
    url: URL,
    *,
    client_timeout: aiohttp.ClientTimeout,
    no_tuner_retry_after: int,
    headers: Mapping[str, str] | None = None,
) -> UpstreamStream:
    """GET ``url``; 2xx gives an :class:`UpstreamStream`, anything else a ProxyError.

    ``client_timeout`` should have no total (see above). ``no_tuner_retry_after`` is the
    Retry-After of the NoTunerAvailable raised when NextPVR says every tuner is busy.
    """
    try:
        resp = await http.get(url, headers=headers, timeout=client_timeout, allow_redirects=False)
    except TimeoutError as exc:
        raise NextPVRTimeout("NextPVR did not start the stream in time") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise NextPVRUnreachable(f"could not reach NextPVR for a stream ({type(exc).__name__})") from exc
    if 200 <= resp.status < 300:
        return UpstreamStream(resp)
    try:
        raise await _stream_error(resp, url, no_tuner_retry_after)
    finally:
        resp.release()


async def _stream_error(resp: aiohttp.ClientResponse, url: URL, no_tuner_retry_after: int) -> ProxyError:
    status = resp.status
    if status == 404:
        try:
            peek = await resp.content.read(_ERROR_PEEK_BYTES)
        except (TimeoutError, aiohttp.ClientError, OSError):
            peek = b""
        if says_no_tuner(peek):
            return NoTunerAvailable(retry_after=no_tuner_retry_after)
        query = url.query
        if "recording" in query:
            return RecordingNotFound("NextPVR does not have this recording")
        if {"channeloid", "channel_id", "channel"} & query.keys():
            return ChannelNotFound("NextPVR does not know this channel")
        return NotFound("NextPVR does not have this stream")
    if status == 416:
        m = _CONTENT_RANGE_SIZE.search(resp.headers.get(hdrs.CONTENT_RANGE, ""))
        if m:
            return RangeNotSatisfiable(int(m.group(1)))
    return NextPVRFailed(f"NextPVR answered a stream request with HTTP {status}")
