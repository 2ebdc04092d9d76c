"""Which NextPVR channel groups each channel belongs to (the M3U ``group-title``).

NextPVR reports memberships per channel only on ``channel.list&extras=true``, and only the
XML answer is known to carry them. When that answer has none (a JSON server, an older
version), the groups are listed with ``channel.groups`` and each one's members fetched with
``channel.list&group_id=<name>``. The result is cached for ``ttl`` seconds; a failure keeps
the last known map (an M3U without groups is better than no M3U).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from proxy.errors import ProxyError
from proxy.nextpvr.client import NextPVRClient

__all__ = ["ALL_CHANNELS", "ChannelGroups"]

log = logging.getLogger("proxy.lineup")

#: NextPVR's built-in group that every channel is in; useless as a group-title
ALL_CHANNELS = "all channels"
#: groups asked for one by one in the fallback, at most
_MAX_GROUPS = 64
_CONCURRENCY = 4
#: a failed refresh is retried after this long, not on every request
_RETRY_AFTER_FAILURE = 30.0


class ChannelGroups:
    def __init__(self, client: NextPVRClient, *, ttl: float = 300.0) -> None:
        self._client = client
        self._ttl = ttl
        self._groups: dict[int, tuple[str, ...]] = {}
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def memberships(self) -> Mapping[int, tuple[str, ...]]:
        """channel id -> its group names in NextPVR's order ("All Channels" left out)."""
        if time.monotonic() < self._expires:
            return self._groups
        async with self._lock:
            if time.monotonic() >= self._expires:
                try:
                    self._groups = await self._fetch()
                    self._expires = time.monotonic() + self._ttl
                except ProxyError as exc:
                    log.warning("channel groups unavailable, keeping the last known ones: %s", exc.message)
                    self._expires = time.monotonic() + min(self._ttl, _RETRY_AFTER_FAILURE)
        return self._groups

    async def _fetch(self) -> dict[int, tuple[str, ...]]:
        channels = await self._client.channel_list(extras=True)
        found = {c.id: _useful(c.groups) for c in channels}
        if any(found.values()):
            return found
        names = [g.name for g in await self._client.channel_groups() if g.name.lower() != ALL_CHANNELS]
        if len(names) > _MAX_GROUPS:
            log.warning("NextPVR has %d channel groups; only the first %d are used", len(names), _MAX_GROUPS)
            names = names[:_MAX_GROUPS]
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def members(name: str) -> tuple[str, tuple[int, ...]]:
            async with gate:
                return name, tuple(c.id for c in await self._client.channel_list(name))

        out: dict[int, list[str]] = {}
        for name, ids in await asyncio.gather(*(members(n) for n in names)):
            for channel_id in ids:
                out.setdefault(channel_id, []).append(name)
        return {channel_id: tuple(groups) for channel_id, groups in out.items()}


def _useful(groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(g for g in groups if g.strip() and g.strip().lower() != ALL_CHANNELS)
