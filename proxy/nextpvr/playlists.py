"""Fetching a transcode's playlist from NextPVR, which answers errors in the same place.

``*.transcode.m3u8`` is an API method, so where a playlist is expected NextPVR may answer an
XML/JSON envelope instead: code 8 when the session is gone, another error when the
transcoder is. A 404 means the transcode is gone. These become :class:`TranscodeLost`
(the caller starts a new transcode) or :class:`TranscodeFailed`.

A fetch is bounded in total time (``total``), not only by the silence between two reads: a
NextPVR that drips one byte every few seconds would otherwise hold the refresh (and at the
start, every viewer waiting for it) for minutes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from yarl import URL

from proxy.errors import NextPVRTimeout, NextPVRUnparseable, NotFound, TranscodeFailed, TranscodeLost
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient, TranscodeKind
from proxy.nextpvr.envelope import is_session_error, parse_envelope

__all__ = ["FetchedPlaylist", "fetch_transcode_playlist"]


@dataclass(frozen=True, slots=True)
class FetchedPlaylist:
    text: str
    #: the URL relative references in ``text`` resolve against
    base: str


async def fetch_transcode_playlist(client: NextPVRClient, metrics: Metrics, url: URL, *, kind: TranscodeKind,
                                   max_bytes: int, total: float, what: str, profile: str) -> FetchedPlaylist:
    """The playlist at ``url`` (at most ``max_bytes``, within ``total`` seconds); ``what`` names it
    in error messages."""
    try:
        async with asyncio.timeout(total):
            try:
                stream = await client.open_stream(url)
            except NotFound as exc:
                raise TranscodeLost(f"NextPVR no longer has the {what} transcode", session_lost=False) from exc
            async with stream:
                body = await stream.read(max_bytes)
    except TimeoutError:
        raise NextPVRTimeout(f"NextPVR took longer than {total:g} s to send the {what} playlist") from None
    metrics.received_bytes.labels("hls").inc(len(body))
    head = body.lstrip()[:1]
    if head in (b"<", b"{"):
        env = parse_envelope(body, f"{kind}.transcode.m3u8")
        if is_session_error(env):
            raise TranscodeLost(f"NextPVR lost the session of the {what} transcode", session_lost=True)
        raise TranscodeFailed(f"NextPVR answered an error instead of the {what} playlist", profile=profile)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NextPVRUnparseable("NextPVR's playlist is not UTF-8 text") from exc
    return FetchedPlaylist(text, str(url))
