"""What a served playlist must never carry: NextPVR's origins, its session ids, ``sid=`` (pure).

The rewriter (:mod:`proxy.hls.rewrite`) asks a :class:`LeakGuard` about every piece of upstream
text it would otherwise copy to a client: unknown tags, non-URI attribute values, EXTINF titles,
fragments and the URIs it keeps verbatim (``data:``, key-system schemes, ``{$var}`` references).
The guard is built by the caller from what only the caller knows (the configured origins, the
session ids the pool has held), so the rewriter stays pure.

A match is looked for case-insensitively and through any depth of percent-encoding (``%73id%3D``
and ``%2573id=`` are ``sid=``), and inside base64 ``data:`` URIs, since clients decode all of them.
Hosts shorter than 4 characters are matched as ``//host`` and ``host:port`` only: a bare ``nas``
would match ordinary words.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = ["ATTRIBUTE_TAGS", "DEFAULT_PASSTHROUGH_SCHEMES", "LeakGuard", "trim_attributes"]

#: key-system URI schemes a player must receive as they are (FairPlay's ``skd:``); Widevine and
#: PlayReady keys in HLS are ``data:`` URIs, which always pass
DEFAULT_PASSTHROUGH_SCHEMES: Final = ("skd",)
#: percent-decoding rounds: deeper nesting is treated as a match (no client decodes that far either)
_UNQUOTE_ROUNDS: Final = 4
_MIN_NEEDLE: Final = 4
_DATA_BASE64: Final = re.compile(r"data:[^,]*;base64,", re.IGNORECASE)

#: known tags whose value is an attribute list: a leaking X- attribute can go alone
ATTRIBUTE_TAGS: Final = frozenset({
    "EXT-X-KEY", "EXT-X-MAP", "EXT-X-DATERANGE", "EXT-X-MEDIA", "EXT-X-STREAM-INF",
    "EXT-X-I-FRAME-STREAM-INF", "EXT-X-SESSION-KEY", "EXT-X-START", "EXT-X-PART", "EXT-X-PART-INF",
    "EXT-X-SERVER-CONTROL", "EXT-X-SKIP", "EXT-X-PRELOAD-HINT", "EXT-X-RENDITION-REPORT",
    "EXT-X-CONTENT-STEERING", "EXT-X-IMAGE-STREAM-INF", "EXT-X-TILES",
})


def _trie_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of ``words``, as a prefix tree: a few comparisons per character
    instead of one per word (64 session ids cost about what 4 would)."""
    root: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:  # type: ignore[type-arg]
        if "" in node:  # a shorter word ends here: finding it is enough
            return ""
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return re.compile(build(root))


def _needles_of_origin(origin: str) -> set[str]:
    parts = urlsplit(origin.lower())
    host = parts.hostname or ""
    if not host:
        return set()
    needles = {parts.netloc.rpartition("@")[2], f"//{host}"}
    if len(host) >= _MIN_NEEDLE:
        needles.add(host)
    return {n for n in needles if len(n) >= _MIN_NEEDLE}


class LeakGuard:
    """Finds the origins' hosts, the session ids and ``sid=`` in text, in any casing or encoding."""

    __slots__ = ("_pattern", "needles")

    def __init__(self, *, origins: Iterable[str] = (), session_ids: Iterable[str] = ()) -> None:
        needles = {"sid="}
        for origin in origins:
            needles |= _needles_of_origin(origin)
        # shorter ids cannot be told from ordinary text (NextPVR's are 32 hex digits)
        needles |= {sid.lower() for sid in session_ids if len(sid) >= _MIN_NEEDLE}
        self.needles: tuple[str, ...] = tuple(sorted(needles))
        self._pattern = _trie_pattern(self.needles)

    def found(self, text: str) -> bool:
        """Whether ``text`` carries a needle, also once lower-cased and percent-decoded."""
        if "%" in text:
            for _ in range(_UNQUOTE_ROUNDS):
                if self._pattern.search(text.lower()) is not None:
                    return True
                decoded = unquote(text, errors="replace")
                if decoded == text:
                    return False
                text = decoded
            return "%" in text or self._pattern.search(text.lower()) is not None
        return self._pattern.search(text.lower()) is not None

    def found_in_uri(self, uri: str) -> bool:
        """:meth:`found`, plus the decoded payload of a base64 ``data:`` URI."""
        if self.found(uri):
            return True
        m = _DATA_BASE64.match(uri)
        if m is None:
            return False
        payload = unquote(uri[m.end():]).strip()
        try:
            raw = base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_"
                                   if "-" in payload or "_" in payload else None)
        except (binascii.Error, ValueError):
            return False  # not decodable: a client cannot read anything from it either
        # UTF-16 (PlayReady) and UTF-8 texts both show their ASCII needles once NULs are dropped
        return self.found(raw.replace(b"\x00", b"").decode("latin-1"))


def trim_attributes(line: str, colon: int, end: int, spans: Sequence[tuple[str, int, int, bool]],
                    guard: LeakGuard) -> tuple[str, int] | None:
    """``line`` without its leaking ``X-`` client attributes, and how many went; None when any other
    attribute (or an attribute name) leaks, so that the whole tag must go. ``spans`` are the
    rewriter's (name, value start, value end, quoted) of the attribute list ``line[colon + 1:end]``."""
    kept: list[str] = []
    removed = 0
    for attr, start, stop, quoted in spans:
        value = line[start:stop]
        if guard.found(attr) or guard.found(value):
            if not attr.startswith("X-") or guard.found(attr):
                return None
            removed += 1
            continue
        kept.append(f'{attr}="{value}"' if quoted else f"{attr}={value}")
    return line[:colon + 1] + ",".join(kept) + line[end:], removed
