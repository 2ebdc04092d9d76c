"""Opaque, expiring, scope-bound tokens naming an upstream resource, and the URL mapper using them.

A token is ``base64url(version || scope_tag || AES-SIV(k_aead, plaintext, ad=version || scope_tag))``
without padding, where

* ``scope_tag = HMAC-SHA256(k_scope, scope)[:8]``;
* ``plaintext = varint(2 * origin + kind), varint(generation), expires (4 bytes), deflate(path_query)``;
* the keys are derived from the signer's secret with HKDF-SHA256, one ``info`` per purpose.

The upstream path and query are encrypted (RFC 5297 AES-SIV, from ``cryptography``): a client
holding a playlist learns nothing of NextPVR's paths or parameters but their compressed length.
AES-SIV is *deterministic* authenticated encryption: the same (scope, target) always gives the same
token, which LL-HLS preload hints, byte-range playlists and the clients' "same URI across reloads"
check rely on (so callers must choose ``expires`` in coarse steps: a new value renames every
segment). Its synthetic IV is also the authentication tag, so a token costs 16 bytes over the
plaintext, and any bit changed anywhere is refused as ``forged``.

The scope tag is sent in the clear and authenticated as associated data: :meth:`TokenSigner.verify`
can then tell a genuine token used on the wrong channel (``scope``) from a forgery (``forged``),
as before. The path is deflated with a preset dictionary of NextPVR's URL vocabulary first, which
keeps a typical segment token near 55 characters (the plaintext is never attacker-chosen, so the
length the compression reveals says nothing a client could use).

``path_query`` is origin-relative, so the upstream host never appears in a token even encrypted,
and every occurrence of the session id is replaced by :data:`SID_PLACEHOLDER`; the current sid is
substituted back only at fetch time (:meth:`ProxyUrlMapper.resolve`). Verification is on the hot
path of every segment request, so tokens already verified are kept in a bounded cache.

URLs on any host that is not an allowed origin (or with another scheme, or no host at all) are
rewritten to ``{prefix}/blocked/{digest}/{name}``, a route that always answers 403, rather than
left pointing elsewhere: a playlist must neither turn the proxy into an open relay nor hand
clients a LAN host name or a URL carrying a session id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets as _secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.hls.rewrite import UriKind, UriSite
from proxy.hls.urls import ANY_SCOPE as _SCOPE
from proxy.hls.urls import BLOCKED_SCOPE, HLS_PREFIX
from proxy.hls.urls import check_scope as _check_scope

__all__ = [
    "DEFAULT_VERIFIED_CACHE",
    "MAX_PATH_QUERY_BYTES",
    "MAX_TOKEN_CHARS",
    "SID_PLACEHOLDER",
    "ProxyUrlMapper",
    "Target",
    "TokenError",
    "TokenSigner",
    "file_name",
]

#: stands for the session id inside a token; a NUL never occurs in a URL the mapper accepts
SID_PLACEHOLDER: Final = "\x00sid\x00"
#: upstream path+query longer than this (UTF-8 bytes) is never proxied
MAX_PATH_QUERY_BYTES: Final = 2900
#: verify() refuses longer input before decoding anything
MAX_TOKEN_CHARS: Final = 4096
#: verified tokens remembered by default (``auth.token_cache_entries``)
DEFAULT_VERIFIED_CACHE: Final = 4096

TokenKind = Literal["media", "playlist"]
TokenReason = Literal["forged", "expired", "scope"]

_VERSION: Final = 2
_SCOPE_TAG_BYTES: Final = 8
_AD_BYTES: Final = 1 + _SCOPE_TAG_BYTES
_SIV_BYTES: Final = 16
# the shortest plaintext: two one-byte varints, expires, and an empty deflate stream
_MIN_BYTES: Final = _AD_BYTES + _SIV_BYTES + 1 + 1 + 4 + 2
_KIND_CODES: Final = {"media": 0, "playlist": 1}
_KINDS: Final[tuple[TokenKind, TokenKind]] = ("media", "playlist")
_U32: Final = 2**32 - 1
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9_-]+")
_B64_TRANSLATE: Final = bytes.maketrans(b"+/", b"-_")
_IPAD: Final = bytes(x ^ 0x36 for x in range(256))
_OPAD: Final = bytes(x ^ 0x5C for x in range(256))
_SCOPE_CACHE_MAX: Final = 1024
#: longer tokens are verified every time rather than cached (bounds the cache in bytes too)
_CACHED_TOKEN_CHARS: Final = 256
# raw deflate with a 512-byte window: the dictionary below fits, and the state is small and quick
# to set up (about 2 us a token)
_WBITS: Final = -9
# NextPVR's URL vocabulary, most frequent last (deflate codes near matches in fewer bits). Part of
# the token format: changing it needs a new _VERSION.
_ZDICT: Final = (b"/live?channeloid=&client=.m3u8.mp4.m4s.aac.key/transcode/.ts?sid=\x00sid\x00"
                 b"/services/service?method=recording.transcode.segment&sid=\x00sid\x00&transcode="
                 b"&segment=&seg=&file=/service?method=channel.transcode.segment&sid=\x00sid\x00")


@dataclass(frozen=True, slots=True)
class Target:
    """An upstream resource: ``origin`` indexes the allowed origins (0 = NextPVR)."""

    origin: int
    path_query: str
    kind: TokenKind
    generation: int
    expires: int


class TokenError(Exception):
    """A token that must be refused (the web layer answers 403)."""

    def __init__(self, reason: TokenReason) -> None:
        super().__init__(f"token refused: {reason}")
        self.reason: TokenReason = reason


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the padded key states hashed once: about 3x faster per call
    than ``hmac.digest``, which re-derives them on every call."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_B64_TRANSLATE).rstrip(b"=").decode("ascii")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); ValueError on a truncated or over-long varint."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, _WBITS, 1, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return c.compress(data) + c.flush()


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(_WBITS, _ZDICT)
    out = d.decompress(data, MAX_PATH_QUERY_BYTES + 1)
    if not d.eof or d.unused_data or d.unconsumed_tail or len(out) > MAX_PATH_QUERY_BYTES:
        raise ValueError("bad path")
    return out


def _hkdf(secret: bytes, length: int, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"nextpvr-hls-proxy",
                info=b"nextpvr-hls-proxy/" + purpose).derive(secret)


class TokenSigner:
    """Seals and verifies tokens. ``secret=None`` draws 32 random bytes (tokens die with the process).

    ``cache_entries`` bounds the verified-token cache (0 turns it off); a cached token is still
    checked against the scope and the clock on every use.
    """

    def __init__(self, secret: bytes | None, *, cache_entries: int = DEFAULT_VERIFIED_CACHE) -> None:
        if secret is None:
            secret = _secrets.token_bytes(32)
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        if cache_entries < 0:
            raise ValueError("cache_entries must not be negative")
        self._siv = AESSIV(_hkdf(secret, 64, b"token-aead/v2"))
        self._scope_key = _HmacSha256(_hkdf(secret, 32, b"token-scope/v2"))
        self._blocked_key = _HmacSha256(_hkdf(secret, 32, b"blocked-url/v2"))
        self._scope_tags: dict[str, bytes] = {}
        #: token -> (scope tag, target); insertion order is eviction order
        self._verified: dict[str, tuple[bytes, Target]] = {}
        self._cache_entries = cache_entries

    def _scope_tag(self, scope: str) -> bytes:
        tag = self._scope_tags.get(scope)
        if tag is None:
            tag = self._scope_key.digest(scope.encode("ascii"))[:_SCOPE_TAG_BYTES]
            if len(self._scope_tags) >= _SCOPE_CACHE_MAX:
                self._scope_tags.clear()
            self._scope_tags[scope] = tag
        return tag

    def _associated(self, scope: str) -> bytes:
        _check_scope(scope)
        return bytes((_VERSION,)) + self._scope_tag(scope)

    @staticmethod
    def _fields(kind: TokenKind, origin: int, generation: int, expires: int) -> bytes:
        """The plaintext before the path: what the mapper computes once per (origin, kind)."""
        if not (0 <= origin <= 255 and 0 <= generation <= _U32 and 0 <= expires <= _U32):
            raise ValueError("origin must fit a byte, generation and expires 32 bits")
        return _varint(2 * origin + _KIND_CODES[kind]) + _varint(generation) + expires.to_bytes(4, "big")

    def _seal(self, associated: bytes, fields: bytes, path_query: bytes) -> str:
        return _b64(associated + self._siv.encrypt(fields + _deflate(path_query), [associated]))

    def sign(self, scope: str, target: Target) -> str:
        """The token for ``target`` under ``scope``: URL-safe, no '/', deterministic."""
        associated = self._associated(scope)
        fields = self._fields(target.kind, target.origin, target.generation, target.expires)
        body = target.path_query.encode("utf-8", "surrogatepass")
        if len(body) > MAX_PATH_QUERY_BYTES:
            raise ValueError("upstream path and query too long for a token")
        return self._seal(associated, fields, body)

    def verify(self, scope: str, token: str, *, now: float) -> Target:
        """The target named by ``token``; raises :class:`TokenError` (``forged`` before ``scope``
        before ``expired``, whatever is cached)."""
        hit = self._verified.get(token)
        if hit is not None:
            tag, target = hit
        else:
            tag, target = self._open(token)
            if self._cache_entries and len(token) <= _CACHED_TOKEN_CHARS:
                if len(self._verified) >= self._cache_entries:
                    del self._verified[next(iter(self._verified))]
                self._verified[token] = (tag, target)
        expected = self._scope_tags.get(scope)
        if expected is None:
            if not _SCOPE.fullmatch(scope):
                raise TokenError("scope")
            expected = self._scope_tag(scope)
        if not _secrets.compare_digest(tag, expected):
            raise TokenError("scope")
        if now >= target.expires:
            raise TokenError("expired")
        return target

    def _open(self, token: str) -> tuple[bytes, Target]:
        """Decrypt and authenticate ``token``: (its scope tag, its target), or TokenError("forged")."""
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
            raise TokenError("forged")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("forged") from None
        if len(raw) < _MIN_BYTES or raw[0] != _VERSION or _b64(raw) != token:  # one spelling only
            raise TokenError("forged")
        associated = raw[:_AD_BYTES]
        try:
            plain = self._siv.decrypt(raw[_AD_BYTES:], [associated])
            code, pos = _read_varint(plain, 0)
            generation, pos = _read_varint(plain, pos)
            expires = int.from_bytes(plain[pos:pos + 4], "big")
            path_query = _inflate(plain[pos + 4:]).decode("utf-8", "surrogatepass")
        except (InvalidTag, ValueError, zlib.error, UnicodeDecodeError):
            # only InvalidTag can happen: this signer never seals a malformed plaintext
            raise TokenError("forged") from None
        if code > 511 or generation > _U32 or len(plain) < pos + 4:
            raise TokenError("forged")
        return associated[1:], Target(code >> 1, path_query, _KINDS[code & 1], generation, expires)

    def blocked_digest(self, url: str) -> str:
        """A short keyed digest naming a refused URL in logs and paths without revealing it."""
        return _b64(self._blocked_key.digest(url.encode("utf-8", "surrogatepass"))[:9])


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
