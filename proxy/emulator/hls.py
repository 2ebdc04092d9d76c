"""What a transcode lists and serves: the live sliding window or the recording's VOD playlist.

A channel transcode's segment ``n`` is the channel's segment ``base_index + n``. The first
``initial_segments`` come from the tuner's recent past and are all listed the moment the status
reaches 100; after that one more segment is listed per segment duration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import m3u8
from aiohttp import web

from proxy.emulator.state import EmulatorState, Transcode

__all__ = ["Window", "playlist_text", "segment_bytes", "window"]

#: segments behind the live window that are still served (a slow player's last playlist)
RETENTION_WINDOWS = 2


@dataclass(frozen=True, slots=True)
class Window:
    first: int
    #: one past the last listed segment
    end: int
    #: the playlist will not grow any more (EXT-X-ENDLIST)
    complete: bool
    playlist_type: str | None


def window(state: EmulatorState, t: Transcode, now: float | None = None) -> Window:
    now = time.monotonic() if now is None else now
    cfg = state.config
    if t.kind == "recording":
        rec = state.store.recordings.get(t.recording_id or -1)
        if rec is None or now < t.ready_at:
            return Window(0, 0, rec is None, None)
        available, total = state.recording_segments(rec, time.time())
        complete = available >= total and rec.status(time.time()) == "ready"
        return Window(0, available, complete, "VOD" if complete else "EVENT")
    if now < t.ready_at:
        return Window(0, 0, False, None)
    grown = int((now - t.ready_at) // state.feeds.duration(t.channel))
    end = cfg.initial_segments + grown
    return Window(max(0, end - cfg.playlist_window), end, False, None)


def _segment_uri(state: EmulatorState, t: Transcode, n: int, request: web.Request) -> str:
    style = state.config.segment_uri_style
    if style == "query":
        return f"?method={t.kind}.transcode.segment&sid={t.sid}&transcode={t.id}&segment={n}"
    path = f"transcode/{t.id}/{n}.ts?sid={t.sid}"
    if style == "absolute":
        return f"{request.scheme}://{request.host}/{path}"
    return path


def playlist_text(state: EmulatorState, t: Transcode, request: web.Request) -> str:
    """The transcoder's playlist, written with the ``m3u8`` library's model.

    Producing a simple playlist from a model is what ``m3u8`` is made for; its writer drops and
    normalises tags (``hls-rewrite.md``), which is why it never writes the *proxy's* output, but
    nothing is lost here: every value comes from the model.
    """
    win = window(state, t)
    duration = state.feeds.duration(t.channel)
    playlist = m3u8.M3U8()
    playlist.version = 3
    playlist.target_duration = max(1, int(duration + 0.5))
    playlist.media_sequence = win.first
    playlist.playlist_type = win.playlist_type.lower() if win.playlist_type else None
    for n in range(win.first, win.end):
        playlist.add_segment(m3u8.Segment(uri=_segment_uri(state, t, n, request), duration=duration))
    playlist.is_endlist = win.complete
    text: str = playlist.dumps()
    return text if text.endswith("\n") else text + "\n"


def segment_bytes(state: EmulatorState, sid: str | None, transcode_id: int, n: int) -> bytes | None:
    """Segment ``n`` of the sid's transcode ``transcode_id``; None if it is gone or not (yet) there."""
    state.count_segment_fetch(transcode_id, n)
    t = state.transcodes.get(sid or "")
    if t is None or t.dead or t.id != transcode_id or n < 0:
        return None
    win = window(state, t)
    oldest = 0 if t.kind == "recording" else win.first - RETENTION_WINDOWS * state.config.playlist_window
    if not oldest <= n < win.end:
        return None
    t.last_activity = time.monotonic()
    return state.feeds.segment(t.channel, t.base_index + n)
