"""The rewriting pass: one playlist's lines, rewritten in place, with the facts they hold.

``_Pass`` resolves each URI site against the upstream URL, hands it to the :data:`Mapper`,
drops what the :class:`~proxy.hls.scrub.LeakGuard` finds, and collects :class:`PlaylistInfo`.
The chunking driver and the decisions it implements are in ``rewrite.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from proxy.hls.media_model import SegmentMarks
from proxy.hls.playlist_syntax import (
    _DATERANGE_CLASS,
    _MULTIVARIANT_TAGS,
    _NUMERIC_TAGS,
    _URI_TAGS,
    SEGMENT_TAGS,
    PlaylistError,
    UriKind,
    UriSite,
    _attribute_spans,
    _integer,
    _Span,
    _target_duration,
)
from proxy.hls.resolve import BaseURL
from proxy.hls.scrub import ATTRIBUTE_TAGS, LeakGuard, trim_attributes

#: absolute upstream URL (fragment removed) -> replacement URI, or None to keep the original verbatim.
#: A value that must not be kept and is no http(s) URL with a host (another scheme, no host, a
#: leaking ``data:`` URI) is passed as written: the mapper must replace it with a refusing URL.
Mapper: TypeAlias = Callable[[str, UriSite], str | None]


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    """Facts collected in the rewriting pass.

    ``segment_count`` counts media segment URI lines (not variant URIs, not the parts
    of an unfinished LL-HLS segment); ``total_duration`` sums their EXTINF values.
    ``is_master`` means multivariant tags and no media segment. Absent tags give
    ``None`` (target duration, playlist type, version) or the spec default 0.
    ``dropped_tags`` counts tag lines removed because they carried a leak (and
    ``dropped_attributes`` the client attributes, titles and fragments removed alone);
    ``dropped_names`` names those tags (at most 16 distinct names; a name that itself
    leaks, or is not a plain tag name, shows as ``EXT?``). Comments are not counted.
    """

    is_master: bool
    target_duration: int | None
    media_sequence: int
    discontinuity_sequence: int
    endlist: bool
    playlist_type: str | None
    segment_count: int
    total_duration: float
    has_define: bool
    version: int | None
    dropped_tags: int = 0
    dropped_attributes: int = 0
    dropped_names: tuple[str, ...] = ()


#: a line the pass removed (comments, leaking tags); compared by identity, never by value
_DROP: Final = "\x00dropped line\x00"
_PLAIN_TAG_NAME: Final = re.compile(r"EXT[A-Z0-9-]{0,40}|URI")
_MAX_DROPPED_NAMES: Final = 16
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_SITE_SEGMENT: Final = UriSite(None, None, UriKind.MEDIA)
_SITE_VARIANT: Final = UriSite(None, None, UriKind.PLAYLIST)


class _Pass:
    """State of one rewrite: the resolver, the mapper and the facts collected so far."""

    def __init__(self, base_url: str, mapper: Mapper, guard: LeakGuard, passthrough: frozenset[str]) -> None:
        self.base = BaseURL(base_url)
        self.mapper = mapper
        self.guard = guard
        self.passthrough = passthrough
        #: lines replaced by _DROP so far (the chunk writer filters only chunks that have some)
        self.removed = 0
        self.dropped_tags = 0
        self.dropped_attributes = 0
        self.dropped_names: dict[str, None] = {}
        #: the URI line of a dropped EXT-X-STREAM-INF goes with it
        self.drop_variant = False
        self.target_duration: int | None = None
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.endlist = False
        self.playlist_type: str | None = None
        self.segment_count = 0
        self.extinf_count = 0
        self.total_duration = 0.0
        self.has_define = False
        self.version: int | None = None
        self.multivariant = False
        self.variant_pending = False
        #: DATERANGE ID -> CLASS, so a later tag with the same ID keeps its meaning (bounded by the text)
        self.daterange_classes: dict[str, str] = {}
        # where the segments are in the output, for the stitcher (media_model.build_media); one
        # entry per segment, bounded by the text like the lines themselves
        self.body_start = -1
        self.seg_uris: list[int] = []
        self.seg_durations: list[float] = []
        #: the EXTINF duration of the segment whose URI line has not come yet
        self.seg_duration = 0.0
        self.discontinuities: list[int] = []
        self.variant_streams = False

    def marks(self) -> SegmentMarks:
        return SegmentMarks(self.body_start, self.seg_uris, self.seg_durations, self.discontinuities,
                            self.variant_streams)

    def info(self) -> PlaylistInfo:
        return PlaylistInfo(
            is_master=self.multivariant and self.extinf_count == 0 and self.segment_count == 0,
            target_duration=self.target_duration,
            media_sequence=self.media_sequence,
            discontinuity_sequence=self.discontinuity_sequence,
            endlist=self.endlist,
            playlist_type=self.playlist_type,
            segment_count=self.segment_count,
            total_duration=self.total_duration,
            has_define=self.has_define,
            version=self.version,
            dropped_tags=self.dropped_tags,
            dropped_attributes=self.dropped_attributes,
            dropped_names=tuple(self.dropped_names),
        )

    def check_header(self, first_line: str) -> None:
        if first_line.startswith("\ufeff"):
            first_line = first_line[1:]
        if first_line.rstrip(" \t\r") != "#EXTM3U":
            raise PlaylistError("not an HLS playlist: the first line is not #EXTM3U")

    def drop(self, name: str, *, tag: bool = True) -> str:
        """Count a removed tag (or, ``tag=False``, a part of one) and return the :data:`_DROP` marker."""
        if tag:
            self.dropped_tags += 1
        else:
            self.dropped_attributes += 1
        if len(self.dropped_names) < _MAX_DROPPED_NAMES:
            shown = name if _PLAIN_TAG_NAME.fullmatch(name) and not self.guard.found(name) else "EXT?"
            self.dropped_names[shown] = None
        return _DROP

    def map(self, value: str, site: UriSite) -> str | None:
        """The replacement for one URI value; None keeps it; :data:`_DROP` drops its line."""
        if not value:
            return None
        found = self.guard.found_in_uri
        if "{$" in value:  # resolved by the client after variable substitution: kept unless it leaks
            return self.refuse(value, site) if found(value) else None
        h = value.find("#")
        if h < 0:
            url = self.base.resolve(value)
            fragment = ""
        else:
            url = self.base.resolve(value[:h])
            fragment = value[h:]
        if url is None:
            m = _SCHEME.match(value)
            scheme = m.group(1).lower() if m else ""
            if (scheme == "data" or (scheme in self.passthrough and site.kind is UriKind.KEY)) and not found(value):
                return None
            return self.refuse(value if h < 0 else value[:h], site)
        new = self.mapper(url, site)
        if new is None:
            return None
        if fragment and self.guard.found(fragment):
            self.drop(site.tag or "URI", tag=False)
            return new
        return new + fragment if fragment else new

    def refuse(self, value: str, site: UriSite) -> str:
        """A value that must not reach the client as written: the mapper's refusing URL, or no line."""
        new = self.mapper(value, site)
        if new is None:
            return _DROP if self.guard.found_in_uri(value) else value
        return new

    def run(self, lines: list[str], start: int, stop: int) -> None:
        """Rewrite ``lines[start:stop]`` in place.

        The hot loop: EXTINF and plain segment URI lines are handled inline, with
        locals instead of attributes, because they are nearly every line of a
        10,000-segment recording; everything else goes through :meth:`tag` and
        :meth:`uri_line`.
        """
        total = self.total_duration
        extinfs = self.extinf_count
        segments = self.segment_count
        resolve = self.base.resolve
        mapper = self.mapper
        isfinite = math.isfinite
        found = self.guard.found
        site = _SITE_SEGMENT
        uris_append = self.seg_uris.append
        durations_append = self.seg_durations.append
        seg_duration = self.seg_duration
        try:
            for i in range(start, stop):
                line = lines[i]
                if not line:
                    continue
                if line[0] == "#":
                    if line.startswith("#EXTINF:"):
                        comma = line.find(",", 8)
                        try:
                            duration = float(line[8:] if comma < 0 else line[8:comma])
                        except ValueError:
                            raise PlaylistError(f"line {i + 1}: EXTINF duration is not a number") from None
                        if not isfinite(duration):
                            raise PlaylistError(f"line {i + 1}: EXTINF duration is not finite")
                        if duration > 0:
                            total += duration
                        if not extinfs and self.body_start < 0:
                            self.body_start = i
                        extinfs += 1
                        seg_duration = duration
                        if comma >= 0 and len(line) > comma + 2 and found(line[comma + 1:]):
                            # a title is free text: emptied, the duration stays
                            lines[i] = line[:comma + 1] + ("\r" if line[-1] == "\r" else "")
                            self.drop("EXTINF", tag=False)
                    elif line.startswith("#EXT"):
                        new = self.tag(line, i)
                        if new is not None:
                            lines[i] = new
                            if new is _DROP:
                                self.removed += 1
                    else:  # a comment: clients ignore it (RFC 8216 4.1), and it is free text
                        lines[i] = _DROP
                        self.removed += 1
                    continue
                if line[-1] == "\r":
                    uri = line[:-1]
                    eol = "\r"
                else:
                    uri = line
                    eol = ""
                if (uri and uri[0] not in " \t" and uri[-1] not in " \t" and not self.variant_pending
                        and "#" not in uri and "{$" not in uri):
                    url = resolve(uri)
                    if url is not None:
                        segments += 1
                        uris_append(i)
                        durations_append(seg_duration)
                        seg_duration = 0.0
                        new = mapper(url, site)
                        if new is not None:
                            lines[i] = new + eol if eol else new
                        continue
                self.segment_count = segments
                self.seg_duration = seg_duration
                new = self.uri_line(line, i)
                segments = self.segment_count
                seg_duration = self.seg_duration
                if new is not None:
                    lines[i] = new
                    if new is _DROP:
                        self.removed += 1
        finally:
            self.total_duration = total
            self.extinf_count = extinfs
            self.segment_count = segments
            self.seg_duration = seg_duration

    def uri_line(self, line: str, index: int) -> str | None:
        if line[-1] == "\r":
            core = line[:-1]
            eol = "\r"
        else:
            core = line
            eol = ""
        uri = core.strip(" \t")
        if not uri:
            return None
        if uri[0] == "#":  # an indented tag or comment: not a URI (hls.js would fetch it)
            new = self.tag(uri, index) if uri.startswith("#EXT") else _DROP
        else:
            if self.variant_pending:
                self.variant_pending = False
                if self.drop_variant:  # its EXT-X-STREAM-INF was dropped: the URI goes too
                    self.drop_variant = False
                    return _DROP
                site = _SITE_VARIANT
            else:
                self.segment_count += 1
                site = _SITE_SEGMENT
            new = self.map(uri, site)
            if new is _DROP:
                self.drop("URI")
            elif site is _SITE_SEGMENT:
                self.seg_uris.append(index)
                self.seg_durations.append(self.seg_duration)
                self.seg_duration = 0.0
        if new is None or new is _DROP:
            return new
        if uri is core:
            return new + eol if eol else new
        lead = core[: len(core) - len(core.lstrip(" \t"))]
        trail = core[len(core.rstrip(" \t")):]
        return lead + new + trail + eol

    def tag(self, line: str, index: int) -> str | None:
        """Handle one ``#EXT`` line; returns the rewritten line or None when unchanged."""
        colon = line.find(":")
        if colon < 0:
            name = line[1:].rstrip(" \t\r")
            value = ""
        else:
            name = line[1:colon]
            value = line[colon + 1:]
        new = self.named_tag(line, index, colon, name, value)
        if name in SEGMENT_TAGS and new is not _DROP:
            if self.body_start < 0:
                self.body_start = index
            if colon < 0 and name == "EXT-X-DISCONTINUITY":
                self.discontinuities.append(index)
        return new

    def named_tag(self, line: str, index: int, colon: int, name: str, value: str) -> str | None:
        sites = _URI_TAGS.get(name)
        if sites is not None:
            if name in _MULTIVARIANT_TAGS:
                self.multivariant = True
            if colon < 0:
                return None
            new = self.rewrite_attributes(line, colon, name, sites, index)
            if new is _DROP:
                return self.drop(name)
            # the mapper's URLs never leak: what is found now came from upstream as it was
            return self.scrub(new or line, colon, name, index) if self.guard.found(new or line) else new
        if name == "EXT-X-STREAM-INF":
            self.multivariant = True
            self.variant_pending = True
            self.variant_streams = True
        elif name == "EXT-X-TARGETDURATION":
            self.target_duration = _target_duration(value, index)
        elif name == "EXT-X-MEDIA-SEQUENCE":
            self.media_sequence = _integer(value, name, index)
        elif name == "EXT-X-DISCONTINUITY-SEQUENCE":
            self.discontinuity_sequence = _integer(value, name, index)
        elif name == "EXT-X-ENDLIST":
            self.endlist = True
        elif name == "EXT-X-PLAYLIST-TYPE":
            self.playlist_type = value.strip(" \t\r") or None
        elif name == "EXT-X-VERSION":
            self.version = _integer(value, name, index)
        elif name == "EXT-X-DEFINE":
            self.has_define = True
        if value and name not in _NUMERIC_TAGS and self.guard.found(line):
            return self.scrub(line, colon, name, index)
        return None

    def scrub(self, line: str, colon: int, name: str, index: int) -> str:
        """``line`` with what leaks removed: leaking ``X-`` attributes of a known attribute-list tag
        go alone; anything else that leaks takes the whole tag with it."""
        if name == "EXT-X-STREAM-INF":
            self.drop_variant = True
        if name not in ATTRIBUTE_TAGS or colon < 0:
            return self.drop(name)
        end = len(line) - 1 if line.endswith("\r") else len(line)
        try:
            spans = _attribute_spans(line, colon + 1, end, name, index)
        except PlaylistError:
            return self.drop(name)
        trimmed = trim_attributes(line, colon, end, spans, self.guard)
        if trimmed is None:
            return self.drop(name)
        out, removed = trimmed
        if self.guard.found(out):  # pragma: no cover - every attribute was checked; a last defence
            return self.drop(name)
        self.drop_variant = False
        for _ in range(removed):
            self.drop(name, tag=False)
        return out

    def rewrite_attributes(self, line: str, colon: int, name: str,
                           sites: MappingProxyType[str, UriSite], index: int) -> str | None:
        end = len(line) - 1 if line.endswith("\r") else len(line)
        spans = _attribute_spans(line, colon + 1, end, name, index)
        if name == "EXT-X-DATERANGE":
            spans = self.daterange_uri_spans(line, spans)
        pieces: list[str] = []
        pos = 0
        for attr, start, stop, _quoted in spans:
            site = sites.get(attr)
            if site is None:
                continue
            new = self.map(line[start:stop], site)
            if new is None:
                continue
            if new is _DROP:
                return _DROP
            pieces.append(line[pos:start])
            pieces.append(new)
            pos = stop
        if not pieces:
            return None
        pieces.append(line[pos:])
        return "".join(pieces)

    def daterange_uri_spans(self, line: str, spans: list[_Span]) -> list[_Span]:
        ident = klass = None
        for attr, start, stop, _quoted in spans:
            if attr == "ID":
                ident = line[start:stop]
            elif attr == "CLASS":
                klass = line[start:stop]
        if ident is not None:
            if klass is not None:
                self.daterange_classes[ident] = klass
            else:
                klass = self.daterange_classes.get(ident)
        if klass is None:
            return spans
        return [s for s in spans if _DATERANGE_CLASS.get(s[0], klass) == klass]
