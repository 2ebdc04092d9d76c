"""Which segment index each proxy URL of a recent VOD (recording) playlist stands for.

A VOD player fetches its playlist once and never reloads it, so after NextPVR's transcode
restarts (a new *generation*) the player still asks for the old URLs. Segment ``i`` of
the old playlist is segment ``i`` of the new one, so the old URLs are mapped by index.
Only the last few generations are kept: each map holds one playlist's segment tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from proxy.hls.tokens import Target, TokenSigner
from proxy.hls.urls import split_hls_path

__all__ = ["VodIndex", "VodMap"]


@dataclass(slots=True)
class VodMap:
    """The segment tokens of one VOD generation, in playlist order ("" for a URI not proxied)."""

    scope: str
    index_of: dict[str, int]
    paths: list[str]


class VodIndex:
    """Generation -> :class:`VodMap`, for the last ``max_generations`` VOD generations."""

    def __init__(self, signer: TokenSigner, *, max_generations: int = 8) -> None:
        self._signer = signer
        self._max = max_generations
        self._maps: OrderedDict[int, VodMap] = OrderedDict()

    def remember(self, generation: int, scope: str, media: list[str]) -> None:
        """Record the proxy URLs of a VOD playlist's segments, in order."""
        vod = VodMap(scope, {}, [])
        for index, proxy_url in enumerate(media):
            parsed = split_hls_path(proxy_url)
            token = parsed.token if parsed is not None else ""
            if token:
                vod.index_of[token] = index
            vod.paths.append(token)
        self._maps[generation] = vod
        while len(self._maps) > self._max:
            self._maps.popitem(last=False)

    def get(self, generation: int) -> VodMap | None:
        return self._maps.get(generation)

    def index(self, target: Target) -> int | None:
        """The segment index ``target`` had in its generation's playlist (None if forgotten)."""
        vod = self._maps.get(target.generation)
        if vod is None:
            return None
        return vod.index_of.get(self._signer.sign(vod.scope, target))
