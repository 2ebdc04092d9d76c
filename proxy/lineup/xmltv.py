"""XMLTV (pure): NextPVR's channels and listings as a guide that validates against xmltv.dtd.

The document is written in two parts so the big one can be prepared once per guide build:
the *head* (prolog, ``<tv>`` and the ``<channel>`` elements, whose icon URLs depend on the
address the client used) and the *body* (every ``<programme>`` and ``</tv>``, which does
not). ``head + body`` is the whole document; the DTD puts all channels before all
programmes, which is what makes the split possible.

Times are ``YYYYMMDDhhmmss +0000``: always UTC with an explicit offset, the form every
reader handles (Jellyfin's XmlTvReader, Plex, Kodi). Text NextPVR sends is stripped of the
characters XML 1.0 cannot carry and of line breaks (the DTD asks for none in element text).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from xml.sax.saxutils import escape

from proxy.lineup.m3u import tvg_id
from proxy.nextpvr.models import Channel, Listing

__all__ = [
    "XMLTV_TAIL",
    "episode_numbers",
    "programme_elements",
    "xmltv_head",
    "xmltv_time",
]

XMLTV_TAIL = "</tv>\n"
GENERATOR = "nextpvr-hls-proxy"

_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_ATTR = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def _text(value: str) -> str:
    return escape(_BREAKS.sub(" ", _NOT_XML.sub("", value)).strip())


def _attr(value: str) -> str:
    return escape(_NOT_XML.sub("", value), _ATTR)


def xmltv_time(epoch: float) -> str:
    return time.strftime("%Y%m%d%H%M%S +0000", time.gmtime(epoch))


def episode_numbers(season: int | None, episode: int | None) -> list[tuple[str, str]]:
    """``(system, value)`` pairs: ``xmltv_ns`` is zero-based (S2E5 is ``1.4.``), ``onscreen``
    is what a viewer reads (``S02E05``). Unknown parts are left out; 0 counts as unknown."""
    s = season if season is not None and season > 0 else None
    e = episode if episode is not None and episode > 0 else None
    if s is None and e is None:
        return []
    ns = f"{'' if s is None else s - 1}.{'' if e is None else e - 1}."
    onscreen = (f"S{s:02d}" if s is not None else "") + (f"E{e:02d}" if e is not None else "")
    return [("xmltv_ns", ns), ("onscreen", onscreen)]


def xmltv_head(channels: Sequence[Channel], *, base: str, query: str = "", generated: float) -> str:
    """Prolog, ``<tv>`` and one ``<channel>`` per channel (icons at ``<base>/icons/<id>``)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<!DOCTYPE tv SYSTEM "xmltv.dtd">\n',
        f'<tv date="{xmltv_time(generated)}" source-info-name="NextPVR" '
        f'generator-info-name="{GENERATOR}">\n',
    ]
    for channel in channels:
        parts.append(f'  <channel id="{_attr(tvg_id(channel))}">\n')
        name = _text(channel.name) or _text(channel.formatted_number)
        parts.append(f"    <display-name>{name}</display-name>\n")
        # a second, numeric display-name: Jellyfin and Plex take the channel number from it
        parts.append(f"    <display-name>{_text(channel.formatted_number)}</display-name>\n")
        if channel.has_icon:
            parts.append(f'    <icon src="{_attr(f"{base}/icons/{channel.id}{query}")}"/>\n')
        parts.append("  </channel>\n")
    return "".join(parts)


def programme_elements(channel: Channel, listings: Sequence[Listing]) -> Iterator[str]:
    """One ``<programme>`` per listing, children in the order the DTD requires."""
    channel_attr = _attr(tvg_id(channel))
    for item in listings:
        if item.end <= item.start:
            continue  # the DTD allows it, but no reader does anything useful with it
        title = _text(item.title) or "(no title)"
        out = [
            f'  <programme start="{xmltv_time(item.start)}" stop="{xmltv_time(item.end)}" '
            f'channel="{channel_attr}">\n',
            f"    <title>{title}</title>\n",
        ]
        subtitle, desc = _text(item.subtitle), _text(item.description)
        if subtitle:
            out.append(f"    <sub-title>{subtitle}</sub-title>\n")
        if desc:
            out.append(f"    <desc>{desc}</desc>\n")
        if item.year:
            out.append(f"    <date>{item.year:04d}</date>\n")
        elif item.original_air_date is not None:
            out.append(f"    <date>{item.original_air_date:%Y%m%d}</date>\n")
        for genre in dict.fromkeys(g for g in map(_text, item.genres) if g):
            out.append(f"    <category>{genre}</category>\n")
        for system, value in episode_numbers(item.season, item.episode):
            out.append(f'    <episode-num system="{system}">{value}</episode-num>\n')
        if not item.firstrun and item.original_air_date is not None:
            out.append(f'    <previously-shown start="{item.original_air_date:%Y%m%d}"/>\n')
        if item.significance.strip().lower() == "premiere":
            out.append("    <premiere/>\n")
        if item.firstrun:
            out.append("    <new/>\n")
        rating = _text(item.rating)
        if rating:
            out.append(f"    <rating>\n      <value>{rating}</value>\n    </rating>\n")
        out.append("  </programme>\n")
        yield "".join(out)
