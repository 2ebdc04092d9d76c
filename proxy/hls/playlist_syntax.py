"""HLS playlist syntax the rewriter knows: URI sites, tag tables, the attribute-list tokenizer.

Pure and stateless: which tags carry URIs in which attributes (section 2 of the team's HLS
notes), which tags make a playlist multivariant, and how an attribute list and the numeric
tag values are read. :class:`PlaylistError` is raised for what cannot be read; its messages
name a line number and a tag, never a value.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias


class PlaylistError(ValueError):
    """The upstream text is not a playlist the proxy can serve.

    Messages name a line number and a tag, never a URI or any other value.
    """


class UriKind(enum.Enum):
    MEDIA = "media"
    PLAYLIST = "playlist"
    KEY = "key"
    INIT = "init"
    PART = "part"
    PRELOAD_HINT = "preload_hint"
    RENDITION_REPORT = "rendition_report"
    DATA = "data"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class UriSite:
    """Where a URI sits: ``tag``/``attribute`` are ``None`` for a URI line."""

    tag: str | None
    attribute: str | None
    kind: UriKind




def _sites(tag: str, **attributes: UriKind) -> MappingProxyType[str, UriSite]:
    return MappingProxyType({name.replace("_", "-"): UriSite(tag, name.replace("_", "-"), kind)
                             for name, kind in attributes.items()})


_K = UriKind
#: tag name -> URI-valued attribute -> site (section 2 of the HLS notes)
_URI_TAGS: Final = MappingProxyType({
    "EXT-X-KEY": _sites("EXT-X-KEY", URI=_K.KEY),
    "EXT-X-SESSION-KEY": _sites("EXT-X-SESSION-KEY", URI=_K.KEY),
    "EXT-X-MAP": _sites("EXT-X-MAP", URI=_K.INIT),
    "EXT-X-MEDIA": _sites("EXT-X-MEDIA", URI=_K.PLAYLIST),
    "EXT-X-I-FRAME-STREAM-INF": _sites("EXT-X-I-FRAME-STREAM-INF", URI=_K.PLAYLIST),
    "EXT-X-IMAGE-STREAM-INF": _sites("EXT-X-IMAGE-STREAM-INF", URI=_K.PLAYLIST),
    "EXT-X-PART": _sites("EXT-X-PART", URI=_K.PART),
    "EXT-X-PRELOAD-HINT": _sites("EXT-X-PRELOAD-HINT", URI=_K.PRELOAD_HINT),
    "EXT-X-RENDITION-REPORT": _sites("EXT-X-RENDITION-REPORT", URI=_K.RENDITION_REPORT),
    "EXT-X-SESSION-DATA": _sites("EXT-X-SESSION-DATA", URI=_K.DATA),
    "EXT-X-CONTENT-STEERING": _sites("EXT-X-CONTENT-STEERING", SERVER_URI=_K.DATA),
    "EXT-X-DATERANGE": _sites("EXT-X-DATERANGE", X_ASSET_URI=_K.PLAYLIST, X_ASSET_LIST=_K.DATA,
                              X_URI=_K.OTHER),
})
#: DATERANGE client attributes only mean "URI" for their own CLASS (bis App. D.2 and F)
_DATERANGE_CLASS: Final = MappingProxyType({
    "X-ASSET-URI": "com.apple.hls.interstitial",
    "X-ASSET-LIST": "com.apple.hls.interstitial",
    "X-URI": "com.apple.hls.preload",
})
_MULTIVARIANT_TAGS: Final = frozenset({
    "EXT-X-STREAM-INF", "EXT-X-I-FRAME-STREAM-INF", "EXT-X-IMAGE-STREAM-INF", "EXT-X-MEDIA",
    "EXT-X-SESSION-DATA", "EXT-X-SESSION-KEY", "EXT-X-CONTENT-STEERING",
})
#: tags whose value the pass parses as a number (a leak there is a PlaylistError already)
#: tags that belong to the next media segment (RFC 8216bis 4.4.4): the first of them (or a URI line)
#: ends the playlist's header; the one table the rewriter, the stitcher and ``budget.unseen_tail`` use
SEGMENT_TAGS: Final = frozenset({
    "EXTINF", "EXT-X-BYTERANGE", "EXT-X-DISCONTINUITY", "EXT-X-KEY", "EXT-X-MAP", "EXT-X-PROGRAM-DATE-TIME",
    "EXT-X-DATERANGE", "EXT-X-GAP", "EXT-X-BITRATE", "EXT-X-PART",
    # SCTE-35 splice markers as packagers write them (not in the RFC, carried with their segment)
    "EXT-X-CUE", "EXT-X-CUE-OUT", "EXT-X-CUE-OUT-CONT", "EXT-X-CUE-IN", "EXT-X-CUE-SPAN",
})

_NUMERIC_TAGS: Final = frozenset({
    "EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE", "EXT-X-VERSION",
})
_MAX_SEQUENCE: Final = 2**64 - 1

#: (attribute name, value start, value end, quoted): a value's span excludes its quotes
_Span: TypeAlias = tuple[str, int, int, bool]


def _attribute_spans(line: str, pos: int, end: int, tag: str, index: int) -> list[_Span]:
    """Tokenise an attribute list (quoted strings may hold commas); tolerates blanks after commas."""
    spans: list[_Span] = []
    while pos < end:
        eq = line.find("=", pos, end)
        if eq < 0:
            raise PlaylistError(f"line {index + 1}: malformed attribute list in {tag}")
        attr = line[pos:eq].strip(" \t")
        if not attr or "," in attr or '"' in attr:
            raise PlaylistError(f"line {index + 1}: malformed attribute list in {tag}")
        start = eq + 1
        if start < end and line[start] == '"':
            close = line.find('"', start + 1, end)
            if close < 0:
                raise PlaylistError(f"line {index + 1}: unterminated quoted string in {tag}")
            spans.append((attr, start + 1, close, True))
            pos = close + 1
        else:
            comma = line.find(",", start, end)
            stop = end if comma < 0 else comma
            pos = stop
            while stop > start and line[stop - 1] in " \t":
                stop -= 1
            spans.append((attr, start, stop, False))
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos < end:
            if line[pos] != ",":
                raise PlaylistError(f"line {index + 1}: malformed attribute list in {tag}")
            pos += 1
            while pos < end and line[pos] in " \t":
                pos += 1
    return spans


def _integer(value: str, tag: str, index: int) -> int:
    text = value.strip(" \t\r")
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) > _MAX_SEQUENCE:
        raise PlaylistError(f"line {index + 1}: {tag} is not a decimal integer")
    return int(text)


def _target_duration(value: str, index: int) -> int:
    text = value.strip(" \t\r")
    if text.isascii() and text.isdigit() and len(text) <= 20:
        return int(text)
    try:
        number = float(text) if text.isascii() and len(text) <= 32 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise PlaylistError(f"line {index + 1}: EXT-X-TARGETDURATION is not a number")
    return math.ceil(number)
