"""ProxyUrlMapper: the rewriter's mapper, upstream URL -> ``{prefix}/{scope}/{token}/{name}``.

Each upstream URL on an allowed origin becomes a token of ``tokens.TokenSigner`` (the origin-relative
path and query, the session id replaced by :data:`~proxy.hls.tokens.SID_PLACEHOLDER`) and a safe file
name keeping the upstream extension (:func:`file_name`); the current sid is substituted back only at
fetch time (:meth:`ProxyUrlMapper.resolve`).

URLs on any host that is not an allowed origin (or with another scheme, or no host at all) are
rewritten to ``{prefix}/blocked/{digest}/{name}``, a route that always answers 403, rather than
left pointing elsewhere: a playlist must neither turn the proxy into an open relay nor hand
clients a LAN host name or a URL carrying a session id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from proxy.hls.rewrite import UriKind, UriSite
from proxy.hls.tokens import _KINDS, MAX_PATH_QUERY_BYTES, SID_PLACEHOLDER, Target, TokenError, TokenSigner
from proxy.hls.urls import BLOCKED_SCOPE, HLS_PREFIX
from proxy.hls.urls import check_scope as _check_scope

__all__ = ["ProxyUrlMapper", "file_name"]


_PLAYLIST: Final = UriKind.PLAYLIST
_RENDITION_REPORT: Final = UriKind.RENDITION_REPORT
_PLAYLIST_KINDS: Final = frozenset({_PLAYLIST, _RENDITION_REPORT})
# Media-like kinds (MEDIA, PART, INIT, PRELOAD_HINT, OTHER) share "segment.ts": a preload hint must
# name its later EXT-X-PART or EXT-X-MAP byte for byte (bis 4.4.5.3), and the mapper is not told
# which of the two a hint announces.
_DEFAULT_NAMES: Final = {
    UriKind.PLAYLIST: "index.m3u8",
    UriKind.RENDITION_REPORT: "index.m3u8",
    UriKind.KEY: "key.key",
    UriKind.DATA: "data.json",
}
_MEDIA_EXTENSIONS: Final = frozenset({
    "ts", "mts", "m2ts", "mp4", "m4s", "m4a", "m4v", "mp4a", "mp4v", "cmfv", "cmfa", "cmft", "fmp4",
    "aac", "ac3", "ec3", "eac3", "mp3", "vtt", "webvtt", "ttml", "key", "json", "jpg", "jpeg", "png",
})
_MAX_NAME: Final = 80
_UNSAFE_NAME_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]")
# names file_name() returns unchanged, for the mapper's fast path: at most _MAX_NAME characters and
# lower-case extensions only (a case-insensitive group makes the match twice as slow)
_PLAIN_PLAYLIST_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,74}\.m3u8")
_EXTENSIONS_RE: Final = "|".join(sorted(_MEDIA_EXTENSIONS, key=len, reverse=True))
_PLAIN_MEDIA_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,72}\.(?:" + _EXTENSIONS_RE + ")")


def file_name(path_query: str, kind: UriKind, forbidden: Sequence[str] = ()) -> str:
    """A safe last path segment for a proxy URL, keeping the upstream extension.

    Playlists always end in ``.m3u8``. A name containing any of ``forbidden``
    (lower-case session ids and host names) is replaced by the default for ``kind``.
    """
    q = path_query.find("?")
    path = path_query if q < 0 else path_query[:q]
    name = path[path.rfind("/") + 1:]
    dot = name.rfind(".")
    ext = name[dot + 1:].lower() if dot > 0 else ""
    if kind in _PLAYLIST_KINDS:
        if ext not in ("m3u8", "m3u"):
            return "index.m3u8"
        name = name[:dot] + ".m3u8"
    elif ext not in _MEDIA_EXTENSIONS:  # a media URL named *.m3u8 would mislead players: not kept
        name = _name_from_query(path_query[q + 1:]) if q >= 0 else ""
        if not name:
            return _DEFAULT_NAMES.get(kind, "segment.ts")
    if not name.isascii() or _UNSAFE_NAME_CHARS.search(name):
        name = _UNSAFE_NAME_CHARS.sub("_", name)
    if len(name) > _MAX_NAME:
        dot = name.rfind(".")
        name = name[: _MAX_NAME - (len(name) - dot)] + name[dot:]
    lowered = name.lower()
    if name.startswith(".") or any(f in lowered for f in forbidden):
        return _DEFAULT_NAMES.get(kind, "segment.ts")
    return name


def _name_from_query(query: str) -> str:
    """The last query value that looks like a file name (``?method=...&file=seg12.ts``), or ''."""
    for pair in reversed(query.split("&")):
        value = pair.rpartition("=")[2]
        value = value[value.rfind("/") + 1:]
        dot = value.rfind(".")
        if dot > 0 and value[dot + 1:].lower() in _MEDIA_EXTENSIONS:
            return value
    return ""


def _canonical_origin(url: str) -> tuple[str, int, str] | None:
    """``(scheme://host[:port], end of authority, host)``, default port elided; None if unusable."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return None
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    if not authority or "@" in authority or "\x00" in authority:
        return None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        host, port_text = authority[: close + 1], authority[close + 1:]
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        return None
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
            return None
        port = int(port_text)
    else:
        port = 0
    default = 80 if scheme == "http" else 443
    host = host.lower()
    origin = f"{scheme}://{host}" + (f":{port}" if port and port != default else "")
    return origin, len(scheme) + 3 + end, host


class ProxyUrlMapper:
    """The proxy's :data:`~proxy.hls.rewrite.Mapper`: upstream URL -> ``{prefix}/{scope}/{token}/{name}``."""

    def __init__(self, signer: TokenSigner, *, scope: str, generation: int, expires: int,
                 origins: Sequence[str], secrets: Sequence[str], prefix: str = HLS_PREFIX,
                 forbidden_names: Sequence[str] = ()) -> None:
        _check_scope(scope)
        if not re.fullmatch(r"(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+", prefix):
            raise ValueError("prefix must look like /hls")
        if not origins or len(origins) > 256:
            raise ValueError("between 1 and 256 origins are allowed")
        self._origins: list[str] = []
        hosts: set[str] = set()
        for origin in origins:
            parsed = _canonical_origin(origin.rstrip("/"))
            if parsed is None or parsed[1] != len(origin.rstrip("/")):
                raise ValueError("an origin must be scheme://host[:port] without path or credentials")
            self._origins.append(parsed[0])
            if len(parsed[2]) >= 4:  # a name holding a (real-length) host name is replaced by a default
                hosts.add(parsed[2])
        self._index = {origin: i for i, origin in reversed(list(enumerate(self._origins)))}
        self._signer = signer
        #: when the tokens this mapper mints expire (Unix seconds)
        self.expires = expires
        if any(len(s) < 4 or "\x00" in s for s in secrets if s):
            # shorter ones could match inside SID_PLACEHOLDER and corrupt earlier replacements
            raise ValueError("a session id to scrub must have at least 4 characters and no NUL")
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        # ``forbidden_names``: what else a file name must not show (older sids: LeakGuard.needles)
        self._forbidden = tuple(sorted({s.lower() for s in self._secrets} | hosts
                                       | {f.lower() for f in forbidden_names if f}))
        self._prefix = f"{prefix}/{scope}/"
        self._blocked_prefix = f"{prefix}/{BLOCKED_SCOPE}/"
        # plaintext fields by 2 * origin + (1 for playlists), so a URL costs one deflate and one seal
        self._associated = signer._associated(scope)
        self._fields = [signer._fields(kind, i, generation, expires)
                        for i in range(len(self._origins)) for kind in _KINDS]
        self._origin0 = self._origins[0]
        self._origin0_len = len(self._origin0)
        self._seal = signer._seal

    def __call__(self, url: str, site: UriSite) -> str | None:
        kind = site.kind
        playlist = kind is _PLAYLIST or kind is _RENDITION_REPORT
        n = self._origin0_len
        if url.startswith(self._origin0) and (len(url) == n or url[n] in "/?"):
            index = 0
            path_query = url[n:]
        else:
            index, path_query = self._other_origin(url)
        # "{$": an EXT-X-DEFINE reference the proxy cannot substitute (and "{" is no URI character)
        if index < 0 or "\x00" in path_query or "#" in path_query or "{$" in path_query:
            return self._blocked(url, site)
        q = path_query.find("?")
        path = path_query if q < 0 else path_query[:q]
        name = path[path.rfind("/") + 1:]
        if (_PLAIN_PLAYLIST_NAME if playlist else _PLAIN_MEDIA_NAME).fullmatch(name):
            lowered = name.lower()
            for forbidden in self._forbidden:
                if forbidden in lowered:
                    name = file_name(path_query, kind, self._forbidden)
                    break
        else:
            name = file_name(path_query, kind, self._forbidden)
        for secret in self._secrets:
            if secret in path_query:
                path_query = path_query.replace(secret, SID_PLACEHOLDER)
        body = path_query.encode("utf-8", "surrogatepass")
        if len(body) > MAX_PATH_QUERY_BYTES:
            return self._blocked(url, site)
        token = self._seal(self._associated, self._fields[2 * index + playlist], body)
        return f"{self._prefix}{token}/{name}"

    def _other_origin(self, url: str) -> tuple[int, str]:
        """(origin index, path+query) of a URL not spelled like the first origin; index -1 if foreign."""
        for i, origin in enumerate(self._origins[1:], start=1):
            if url.startswith(origin):
                path_query = url[len(origin):]
                if not path_query or path_query[0] in "/?":
                    return i, path_query
        parsed = _canonical_origin(url)
        if parsed is None:
            return -1, ""
        return self._index.get(parsed[0], -1), url[parsed[1]:]

    def _blocked(self, url: str, site: UriSite) -> str:
        scheme_end = url.find("://")
        rest = url[scheme_end + 3:] if scheme_end >= 0 else url
        slash = rest.find("/")
        path_query = rest[slash:] if slash >= 0 else ""
        name = file_name(path_query, site.kind, self._forbidden)
        for secret in self._secrets:  # the same URL keeps the same digest across session renewals
            url = url.replace(secret, SID_PLACEHOLDER)
        return f"{self._blocked_prefix}{self._signer.blocked_digest(url)}/{name}"

    def resolve(self, target: Target, sid: str) -> str:
        """The absolute upstream URL of ``target`` with ``sid`` substituted (used at fetch time)."""
        if not 0 <= target.origin < len(self._origins):
            raise TokenError("scope")
        return self._origins[target.origin] + target.path_query.replace(SID_PLACEHOLDER, sid)
