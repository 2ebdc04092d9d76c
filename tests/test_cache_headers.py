"""What an HTTP cache in front of the proxy is told (issue 15): segments immutable with a validator,
live playlists for at most half a segment, errors never stored, and a stale segment URL on a replica
that is not running the channel starts it there."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.hls.manager import TranscodeManager
from proxy.keys import TRANSCODES_KEY
from tests.conftest import EmulatorFactory, ProxyFactory, app_of

CHANNEL = 7181
OTHER = 7183
API_KEY = "cache-test-key-1234"


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def manager(client: TestClient[Any, Any]) -> TranscodeManager:
    return app_of(client)[TRANSCODES_KEY]


def max_age(cache_control: str) -> int:
    match = re.search(r"max-age=(\d+)", cache_control)
    assert match is not None, cache_control
    return int(match.group(1))


async def test_segments_are_immutable_with_a_strong_etag_and_304(proxy: TestClient[Any, Any]) -> None:
    playlist = await (await proxy.get(f"/live/{CHANNEL}.m3u8")).text()
    first = uris(playlist)[0]
    resp = await proxy.get(first)
    assert resp.status == 200
    body = await resp.read()
    assert body[0] == 0x47
    cache_control = resp.headers["Cache-Control"]
    assert "public" in cache_control and "immutable" in cache_control
    assert max_age(cache_control) >= 3600
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")

    again = await proxy.get(first)
    assert again.headers["ETag"] == etag  # the same URL names the same bytes for everyone
    assert await again.read() == body

    revalidated = await proxy.get(first, headers={"If-None-Match": etag})
    assert revalidated.status == 304
    assert await revalidated.read() == b""
    assert revalidated.headers["ETag"] == etag

    other = uris(playlist)[1]
    resp = await proxy.get(other, headers={"If-None-Match": etag})
    assert resp.status == 200  # another segment's validator does not match
    assert resp.headers["ETag"] != etag
    ranged = await proxy.get(first, headers={"Range": "bytes=0-187"})
    assert ranged.status == 206 and ranged.headers["ETag"] == etag


async def test_live_playlist_lives_half_a_segment_and_varies_by_key(emulator: Emulator,
                                                                    proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"auth.api_keys": [API_KEY]})
    resp = await proxy.get(f"/live/{CHANNEL}.m3u8", headers={"X-API-Key": API_KEY})
    assert resp.status == 200
    text = await resp.text()
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    assert 1 <= max_age(resp.headers["Cache-Control"]) <= target / 2
    vary = {v.strip().lower() for v in resp.headers["Vary"].split(",")}
    assert {"authorization", "x-api-key"} <= vary
    # segments need no key (the signed token is the credential) and are shared
    segment = await proxy.get(uris(text)[0])
    assert segment.status == 200 and "public" in segment.headers["Cache-Control"]


async def test_errors_are_never_stored(emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emu)
    assert (await proxy.get(f"/live/{CHANNEL}.m3u8")).status == 200
    busy = await proxy.get(f"/live/{OTHER}.m3u8")
    assert busy.status == 503
    assert busy.headers["Cache-Control"] == "no-store"
    missing = await proxy.get("/live/999999.m3u8")
    assert missing.status == 404
    assert missing.headers["Cache-Control"] == "no-store"
    forged = await proxy.get(f"/hls/live.{CHANNEL}.720p/AAAA/seg.ts")
    assert forged.status == 403
    assert forged.headers["Cache-Control"] == "no-store"


async def test_a_stale_segment_url_starts_the_channel_for_the_next_reload(emulator: Emulator,
                                                                          proxy_factory: ProxyFactory) -> None:
    """Replica A served the playlist and died; the load balancer sends its viewers to replica B with
    the same token secret. B answers the stale segment with a 404 that is not stored and starts the
    channel, so the players' next playlist reload finds it running."""
    secret = {"auth.token_secret": "shared-by-every-replica-0123456789"}
    first = await proxy_factory(emulator, **secret)
    playlist = await (await first.get(f"/live/{CHANNEL}.m3u8")).text()
    stale = uris(playlist)[-1]
    second = await proxy_factory(emulator, **secret)
    assert not manager(second).running()
    resp = await second.get(stale)
    assert resp.status == 404
    assert resp.headers["Cache-Control"] == "no-store"
    assert "reload the playlist" in await resp.text()
    async with asyncio.timeout(10):
        await manager(second).wait_for(lambda: len(manager(second).running()) == 1)
    assert emulator.state.counters.transcodes_started == 2
    reloaded = await second.get(f"/live/{CHANNEL}.m3u8")
    assert reloaded.status == 200
    assert emulator.state.counters.transcodes_started == 2  # the reload joined the start, no third one
