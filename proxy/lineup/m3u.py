"""Extended M3U playlists (pure): the channel line-up and the completed recordings.

The de-facto format IPTV players read (VLC, Kodi's IPTV Simple client, Jellyfin's M3U
tuner): ``#EXTM3U`` with ``url-tvg``, then per entry an ``#EXTINF:<duration> <attributes>,<title>``
line followed by the URL. Attribute values are double-quoted with no escape mechanism, so
quotes and line breaks are taken out of names rather than escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from proxy.nextpvr.models import Channel, Recording

__all__ = ["StreamFormat", "channel_playlist", "recordings_playlist", "tvg_id"]

StreamFormat = Literal["hls", "ts"]

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\ud800-\udfff]+')
_SPACES = re.compile(r"\s+")


def tvg_id(channel: Channel) -> str:
    """The channel's id in the M3U and in the XMLTV guide (RFC 2838 style, as XMLTV suggests).

    NextPVR's channel OID is the one value that survives renames and renumbering.
    """
    return f"{channel.id}.nextpvr"


def _clean(text: str) -> str:
    return _SPACES.sub(" ", _UNSAFE.sub(" ", text.replace('"', "'"))).strip()


def _attrs(pairs: Iterable[tuple[str, str | None]]) -> str:
    return " ".join(f'{key}="{_clean(value)}"' for key, value in pairs if value is not None)


def channel_playlist(
    channels: Sequence[Channel],
    groups: Mapping[int, tuple[str, ...]],
    *,
    base: str,
    fmt: StreamFormat,
    query: str = "",
    start_over: bool = False,
) -> str:
    """The line-up, in the order given (callers sort by channel number).

    ``base`` is the proxy's absolute URL without a trailing slash; ``query`` (``""`` or
    ``"?api_key=..."``) is appended to every URL so a player that needed a key for the
    playlist sends it with the streams too. ``start_over`` (HLS with timeshift): every stream URL
    asks for ``start=programme``, so playback begins at the start of the programme on air.
    """
    lines = [f'#EXTM3U url-tvg="{base}/epg.xml{query}" x-tvg-url="{base}/epg.xml{query}"']
    suffix = "m3u8" if fmt == "hls" else "ts"
    for channel in channels:
        channel_groups = groups.get(channel.id, ())
        attrs = _attrs((
            ("tvg-id", tvg_id(channel)),
            ("tvg-chno", channel.formatted_number),
            ("tvg-name", channel.name),
            ("tvg-logo", f"{base}/icons/{channel.id}{query}" if channel.has_icon else None),
            ("group-title", channel_groups[0] if channel_groups else None),
            ("radio", "true" if channel.kind == "radio" else None),
        ))
        lines.append(f"#EXTINF:-1 {attrs},{_clean(channel.name)}")
        stream_query = f"{query}&start=programme" if query else "?start=programme"
        lines.append(f"{base}/live/{channel.id}.{suffix}{stream_query if start_over else query}")
    return "\n".join(lines) + "\n"


def recordings_playlist(recordings: Sequence[Recording], *, base: str, query: str = "") -> str:
    """Completed recordings as VOD entries (known duration), newest first."""
    lines = ["#EXTM3U"]
    for rec in sorted(recordings, key=lambda r: r.start, reverse=True):
        title = rec.name if not rec.subtitle else f"{rec.name} - {rec.subtitle}"
        attrs = _attrs((("tvg-name", title), ("group-title", rec.name)))
        lines.append(f"#EXTINF:{max(rec.duration_seconds, 0)} {attrs},{_clean(title)}")
        lines.append(f"{base}/recordings/{rec.id}{query}")
    return "\n".join(lines) + "\n"
