"""Channel icons from ``channel.icon``, cached in memory.

Images are kept in a TTL cache bounded in bytes (``getsizeof`` is the image size); an icon
larger than the whole budget is served but not kept. "No icon" answers are cached too, for
a shorter time and bounded in count, so players asking for a missing logo on every guide
refresh do not each cost a NextPVR call. Concurrent requests for the same channel share
one fetch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cachetools import TTLCache

from proxy.asyncutil import SingleFlight
from proxy.nextpvr.client import NextPVRClient

__all__ = ["Icon", "IconCache"]

#: NextPVR changes icons rarely; a day matches the Cache-Control the route sends
DEFAULT_TTL = 86400.0
DEFAULT_NEGATIVE_TTL = 300.0
_NEGATIVE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Icon:
    body: bytes
    content_type: str
    etag: str


def _size(icon: Icon) -> int:
    return len(icon.body)


class IconCache:
    def __init__(self, client: NextPVRClient, *, max_bytes: int, ttl: float = DEFAULT_TTL,
                 negative_ttl: float = DEFAULT_NEGATIVE_TTL) -> None:
        self._client = client
        self._icons: TTLCache[int, Icon] = TTLCache(maxsize=max(1, max_bytes), ttl=ttl, getsizeof=_size)
        self._missing: TTLCache[int, bool] = TTLCache(maxsize=_NEGATIVE_ENTRIES, ttl=negative_ttl)
        self._inflight: SingleFlight[int, Icon | None] = SingleFlight()

    @property
    def cached_bytes(self) -> int:
        return int(self._icons.currsize)

    async def get(self, channel_id: int) -> Icon | None:
        """The channel's icon, or None when NextPVR has none. Callers check the id first:
        the number of distinct keys is then bounded by the channel count."""
        icon = self._icons.get(channel_id)
        if icon is not None:
            return icon
        if channel_id in self._missing:
            return None
        return await self._inflight.run(channel_id, lambda: self._fetch(channel_id))

    def remember_missing(self, channel_id: int) -> None:
        self._missing[channel_id] = True

    async def _fetch(self, channel_id: int) -> Icon | None:
        found = await self._client.channel_icon(channel_id)
        if found is None:
            self.remember_missing(channel_id)
            return None
        body, content_type = found
        icon = Icon(body=body, content_type=content_type,
                    etag=f'"{hashlib.blake2b(body, digest_size=10).hexdigest()}"')
        try:
            self._icons[channel_id] = icon
        except ValueError:
            pass  # larger than the whole cache: serve it, do not keep it
        return icon
