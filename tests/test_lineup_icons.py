"""``/icons/{channel_id}``: NextPVR's channel.icon, cached in memory (bounded), with ETag and
Cache-Control; 404 for a channel without one, that answer cached too."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.web.lineup import ICONS_KEY
from tests.conftest import ProxyFactory, app_of
from tests.test_lineup_epg import GatedNextPVR


async def test_icon_is_served_cached_and_revalidated(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    resp = await proxy.get("/icons/7181")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Cache-Control"] == "public, max-age=86400"
    assert await resp.read() == emulator.state.icons["wxyz.png"]
    etag = resp.headers["ETag"]
    again = await proxy.get("/icons/7181")
    assert again.status == 200 and again.headers["ETag"] == etag
    not_modified = await proxy.get("/icons/7181", headers={"If-None-Match": etag})
    assert not_modified.status == 304
    assert not_modified.headers["ETag"] == etag
    assert emulator.state.counters.api_calls["channel.icon"] == 1


async def test_concurrent_requests_share_one_fetch(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    responses = await asyncio.gather(*(proxy.get("/icons/7183") for _ in range(20)))
    assert {r.status for r in responses} == {200}
    assert emulator.state.counters.api_calls["channel.icon"] == 1


async def test_channel_without_icon_is_404_without_asking(
    proxy: TestClient[Any, Any], emulator: Emulator
) -> None:
    resp = await proxy.get("/icons/7186")  # channel.list says it has none
    assert resp.status == 404
    assert "icon" in await resp.text()
    assert emulator.state.counters.api_calls["channel.icon"] == 0
    assert (await proxy.get("/icons/999999")).status == 404  # no such channel
    bad = await proxy.get("/icons/abc")
    assert bad.status == 400 and "channel_id" in await bad.text()


async def test_missing_icon_answer_is_cached(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    async with GatedNextPVR(emulator.url) as fake:
        fake.missing_icons = {"7184"}
        proxy = await proxy_factory(fake.url)
        for _ in range(3):
            assert (await proxy.get("/icons/7184")).status == 404
        assert fake.calls["channel.icon"] == 1
        await proxy.close()


async def test_cache_is_bounded_in_bytes(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    size = len(emulator.state.icons["wxyz.png"])
    proxy = await proxy_factory(emulator, **{"guide.icon_cache_bytes": size + 10})
    icons = app_of(proxy)[ICONS_KEY]
    assert (await proxy.get("/icons/7181")).status == 200
    assert icons.cached_bytes == size
    assert (await proxy.get("/icons/7183")).status == 200  # evicts the first
    assert icons.cached_bytes <= size + 10
    assert (await proxy.get("/icons/7181")).status == 200
    assert emulator.state.counters.api_calls["channel.icon"] == 3

    tiny = await proxy_factory(emulator, **{"guide.icon_cache_bytes": 16})
    for _ in range(2):
        resp = await tiny.get("/icons/7181")  # too big to keep, still served
        assert resp.status == 200 and await resp.read() == emulator.state.icons["wxyz.png"]
    assert app_of(tiny)[ICONS_KEY].cached_bytes == 0
