"""RFC 3986 reference resolution for playlist URIs (pure: standard library only).

The rewriter (:mod:`proxy.hls.rewrite`) resolves every URI of a playlist against the playlist's
final upstream URL before handing it to its mapper. The result must be exactly what RFC 3986 says
a client would have asked for, which ``urllib.parse.urljoin`` does not give (see :class:`BaseURL`),
and it must be cheap: a 10,000-segment recording resolves 10,000 references, so the common forms
take a concatenation-only fast path.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["BaseURL", "resolve_reference"]

# RFC 3986 appendix B, restricted to a syntactically valid scheme; the fragment is split off before
_REFERENCE: Final = re.compile(r"(?:([A-Za-z][A-Za-z0-9+.\-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?(.*))?",
                               re.DOTALL)
_SCHEME_PREFIX: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for the absolute paths produced by resolution."""
    segments = path.split("/")
    out: list[str] = []
    for seg in segments:
        if seg == "..":
            if len(out) > 1 or (out and out[0] != ""):
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")
    return "/".join(out)


class BaseURL:
    """A parsed base URL that resolves references per RFC 3986 section 5.2.

    Only results with an http(s) scheme and an authority are returned. Unlike
    ``urllib.parse.urljoin`` this keeps an empty query (``seg.ts?``), keeps empty
    path segments and removes dot segments from absolute references, so upstream
    receives exactly the bytes RFC 3986 says the client would have asked for.
    """

    __slots__ = ("authority", "dir", "has_dot_dir", "origin", "origin_dir", "path", "query", "scheme",
                 "without_query")

    def __init__(self, url: str) -> None:
        url = url.partition("#")[0]
        m = _REFERENCE.fullmatch(url)
        scheme = (m.group(1) or "").lower() if m else ""
        if m is None or scheme not in ("http", "https") or m.group(2) is None:
            raise ValueError("base_url must be an absolute http(s) URL")
        self.scheme = scheme
        self.authority: str = m.group(2)
        self.path: str = m.group(3)
        self.query: str | None = m.group(4)
        self.origin = f"{scheme}://{self.authority}"
        self.without_query = self.origin + self.path
        # RFC 3986 5.2.3 merge: an authority with an empty path merges as "/"
        self.dir = self.path[: self.path.rfind("/") + 1] if self.path else "/"
        self.has_dot_dir = "/." in self.dir
        self.origin_dir = self.origin + self.dir

    def resolve(self, ref: str) -> str | None:
        """Absolute URL for ``ref`` (which must not contain its fragment), or None if not http(s).

        Plain relative and root-relative references (no dot segments) take a
        concatenation-only fast path; everything else follows RFC 3986 5.2.2.
        """
        first = ref[:1]
        if first == "/":
            if ref[1:2] == "/":
                return self._resolve_general(ref)
            if "/." in ref:
                q = ref.find("?")
                path = ref if q < 0 else ref[:q]
                return self.origin + _remove_dot_segments(path) + ("" if q < 0 else ref[q:])
            return self.origin + ref
        if first == "?":
            return self.without_query + ref
        if not ref:
            return self.without_query if self.query is None else f"{self.without_query}?{self.query}"
        if ":" in ref and _SCHEME_PREFIX.match(ref):
            return self._resolve_general(ref)
        if first != "." and "/." not in ref and not self.has_dot_dir:
            return self.origin_dir + ref
        q = ref.find("?")
        if q < 0:
            return self.origin + _remove_dot_segments(self.dir + ref)
        return self.origin + _remove_dot_segments(self.dir + ref[:q]) + ref[q:]

    def _resolve_general(self, ref: str) -> str | None:
        m = _REFERENCE.fullmatch(ref)
        if m is None:  # pragma: no cover - the pattern matches every string
            return None
        scheme, authority, path, query = m.groups()
        if scheme is not None:
            scheme = scheme.lower()
            if scheme not in ("http", "https") or authority is None:
                return None
        else:
            scheme = self.scheme
            if authority is None:  # pragma: no cover - resolve() handles every other form
                return None
        if "/." in path:
            path = _remove_dot_segments(path)
        return f"{scheme}://{authority}{path}" + ("" if query is None else "?" + query)


def resolve_reference(base_url: str, ref: str) -> str | None:
    """RFC 3986 resolution of ``ref`` (fragment kept) against ``base_url``; None unless http(s)."""
    ref, hash_, fragment = ref.partition("#")
    url = BaseURL(base_url).resolve(ref)
    return None if url is None else url + hash_ + fragment
