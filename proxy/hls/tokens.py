"""Opaque, expiring, scope-bound tokens naming an upstream resource, and the keys sealing them.

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
substituted back only at fetch time (``url_mapper.ProxyUrlMapper.resolve``). Verification is on the hot
path of every segment request, so tokens already verified are kept in a bounded cache.

The mapper that turns a playlist's upstream URLs into tokens is ``url_mapper.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets as _secrets
import zlib
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.hls.urls import ANY_SCOPE as _SCOPE
from proxy.hls.urls import check_scope as _check_scope

__all__ = [
    "DEFAULT_VERIFIED_CACHE",
    "MAX_PATH_QUERY_BYTES",
    "MAX_TOKEN_CHARS",
    "SID_PLACEHOLDER",
    "Target",
    "TokenError",
    "TokenSigner",
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
