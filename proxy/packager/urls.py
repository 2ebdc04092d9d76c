"""URLs of remuxed segments: ``/remux/remux.<channel>/<token>/<session>-<sequence>.ts`` (and LL-HLS
parts: ``<session>-<sequence>.<part>.ts``, signed the same way).

The token is a :class:`~proxy.hls.tokens.TokenSigner` token (HMAC, expiring, bound to the scope
``remux.<channel>``) naming the segment's file name, so a URL opens that one segment of that
channel and nothing else. The URL of a segment is computed once, when it is listed, and is the
same for every viewer (an HTTP cache in front can store it once): its expiry is the segment's
own creation time plus ``auth.token_ttl``, rounded up to a whole hour. The file name carries the
muxing session's random prefix, so two sessions of a channel never share a name.
"""

from __future__ import annotations

import math
import re
from typing import Final

from proxy.hls.tokens import Target, TokenError, TokenSigner

__all__ = ["PREFIX", "parse_part_name", "parse_segment_name", "part_name", "remux_scope", "segment_uri",
           "verify_segment"]

PREFIX: Final = "/remux"
_NAME: Final = re.compile(r"([0-9a-f]{8})-([0-9]{1,12})\.ts")
_STEP: Final = 3600


def remux_scope(channel_id: int) -> str:
    return f"remux.{channel_id}"


def segment_uri(signer: TokenSigner, channel_id: int, name: str, *, created: float, ttl: float) -> str:
    expires = math.ceil((created + ttl) / _STEP) * _STEP
    scope = remux_scope(channel_id)
    token = signer.sign(scope, Target(0, name, "media", 0, int(expires)))
    return f"{PREFIX}/{scope}/{token}/{name}"


def parse_segment_name(name: str) -> tuple[str, int] | None:
    """(session prefix, sequence) of ``<session>-<sequence>.ts``; None for anything else."""
    match = _NAME.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def verify_segment(signer: TokenSigner, scope: str, token: str, name: str, *, now: float) -> None:
    """Raises :class:`TokenError` unless ``token`` was issued for ``name`` in ``scope``."""
    target = signer.verify(scope, token, now=now)
    if target.path_query != name:
        raise TokenError("scope")


# -- LL-HLS parts: ``<session>-<sequence>.<part>.ts``, signed like segments (the token names the part)

_PART_NAME: Final = re.compile(r"([0-9a-f]{8})-([0-9]{1,12})\.([0-9]{1,4})\.ts")


def part_name(session: str, sequence: int, index: int) -> str:
    return f"{session}-{sequence}.{index}.ts"


def parse_part_name(name: str) -> tuple[str, int, int] | None:
    """(session prefix, sequence, part index) of ``<session>-<sequence>.<part>.ts``; None otherwise."""
    match = _PART_NAME.fullmatch(name)
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None
