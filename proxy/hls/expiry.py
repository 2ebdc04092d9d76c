"""When the signed URLs of a served live playlist expire, and renewing them.

A stitched live playlist keeps every segment's text from the refresh that first listed it
(``stitch.py``), so its tokens were minted then. A segment may stay listed longer than
``auth.token_ttl`` (a long window, an EVENT playlist of a recording in progress): a playlist served
later would carry URLs that have already expired, and "reload the playlist" could not help. So
every served playlist's tokens are valid for at least ``token_ttl`` from the moment it is served:

- expiries are rounded up to a whole hour (:func:`rounded_expiry`), so every viewer gets the same
  URL for a segment for up to an hour and an HTTP cache in front stores it once (issue 15; the
  remux packager's URLs are rounded the same way);
- when the earliest expiry still listed is closer than ``token_ttl``, :func:`renew_tokens`
  re-signs every token of the playlist with the current rounded expiry (at most once an hour;
  only the expiry changes: the segment, its cache key and its generation stay the same).
"""

from __future__ import annotations

import dataclasses
import math
import re

from proxy.hls.tokens import TokenError, TokenSigner
from proxy.hls.urls import HLS_PREFIX

__all__ = ["EXPIRY_STEP", "renew_tokens", "rounded_expiry"]

#: expiries are multiples of this (seconds): one URL per segment and hour for every viewer
EXPIRY_STEP = 3600


def rounded_expiry(now: float, ttl: float) -> int:
    """The expiry to mint at ``now``: at least ``ttl`` seconds away, rounded up to EXPIRY_STEP."""
    return math.ceil((now + ttl) / EXPIRY_STEP) * EXPIRY_STEP


def renew_tokens(text: str, signer: TokenSigner, scope: str, expires: int) -> str:
    """``text`` with every ``/hls/<scope>/<token>/`` token re-signed to expire at ``expires``."""
    pattern = re.compile(re.escape(f"{HLS_PREFIX}/{scope}/") + r"([A-Za-z0-9_-]+)/")

    def renew(match: re.Match[str]) -> str:
        try:
            # now=0: an expired token is renewed too (it was the proxy's own, the seal proves it)
            target = signer.verify(scope, match.group(1), now=0)
        except TokenError:
            return match.group(0)
        token = signer.sign(scope, dataclasses.replace(target, expires=expires))
        return f"{HLS_PREFIX}/{scope}/{token}/"

    return pattern.sub(renew, text)
