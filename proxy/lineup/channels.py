"""NextPVR's channel list, cached: ids and numbers are checked without a NextPVR round trip.

Live routes answer 404 for a channel NextPVR does not have before asking for a tuner;
HDHomeRun routes map channel numbers (``4.1``) to NextPVR's channel OIDs. The list is
refreshed after ``ttl`` seconds, and at most every ``min_refresh`` seconds when a request
names a channel the cached list does not have (a channel added in NextPVR shows up
without a restart, and a flood of bogus ids cannot hammer NextPVR).
"""

from __future__ import annotations

import asyncio
import time

from proxy.errors import ChannelNotFound
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.models import Channel

__all__ = ["ChannelDirectory", "channel_sort_key"]


def channel_sort_key(channel: Channel) -> tuple[int, int, str]:
    """Order by channel number, minor numbers included: 4.1 < 4.2 < 5."""
    return (channel.number, channel.minor, channel.name.lower())


class ChannelDirectory:
    def __init__(self, client: NextPVRClient, *, ttl: float = 300.0, min_refresh: float = 10.0) -> None:
        self._client = client
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._channels: tuple[Channel, ...] = ()
        self._by_id: dict[int, Channel] = {}
        self._by_number: dict[str, Channel] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def channels(self) -> tuple[Channel, ...]:
        """All channels, ordered by number."""
        if self._fetched_at is None or time.monotonic() - self._fetched_at > self._ttl:
            await self._refresh(force=False)
        return self._channels

    async def get(self, channel_id: int) -> Channel:
        await self.channels()
        channel = self._by_id.get(channel_id)
        if channel is None and await self._refresh(force=True):
            channel = self._by_id.get(channel_id)
        if channel is None:
            raise ChannelNotFound(f"NextPVR has no channel with id {channel_id}")
        return channel

    async def by_number(self, number: str) -> Channel:
        await self.channels()
        channel = self._by_number.get(number)
        if channel is None and await self._refresh(force=True):
            channel = self._by_number.get(number)
        if channel is None:
            raise ChannelNotFound(f"NextPVR has no channel number {number}")
        return channel

    async def _refresh(self, *, force: bool) -> bool:
        """Fetch the list (single-flight). False when a forced refresh was too soon."""
        started = time.monotonic()
        async with self._lock:
            if self._fetched_at is not None and self._fetched_at >= started:
                return True  # someone refreshed while we waited
            if force and self._fetched_at is not None and started - self._fetched_at < self._min_refresh:
                return False
            channels = tuple(sorted(await self._client.channel_list(), key=channel_sort_key))
            self._channels = channels
            self._by_id = {c.id: c for c in channels}
            numbers: dict[str, Channel] = {}
            for c in channels:
                numbers.setdefault(c.formatted_number, c)
                numbers.setdefault(f"{c.number}.{c.minor}" if c.minor else str(c.number), c)
            self._by_number = numbers
            self._fetched_at = time.monotonic()
            return True
