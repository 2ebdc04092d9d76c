"""API keys, signed segment URLs, readiness and the start-up warning."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.config import Config
from proxy.emulator import Emulator
from proxy.keys import SIGNER_KEY
from proxy.security import is_loopback, key_matches, warn_if_exposed
from proxy.web.lineup import GUIDE_KEY
from tests.conftest import EmulatorFactory, ProxyFactory, app_of, proxy_config, uris

KEY = "living-room-key-123"
ADMIN = "admin-key-456789"
CHANNEL = 7181


@pytest.fixture
async def locked(emulator: Emulator, proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await proxy_factory(emulator, **{"auth.api_keys": [KEY], "auth.admin_key": ADMIN,
                                            "auth.token_ttl": 30})


async def test_missing_and_wrong_keys_are_401(locked: TestClient[Any, Any]) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({}, f"/live/{CHANNEL}.m3u8"),
        ({"X-API-Key": "nope-nope-nope"}, f"/live/{CHANNEL}.m3u8"),
        ({}, f"/live/{CHANNEL}.m3u8?api_key=wrong-key-0000"),
        ({"Authorization": "Bearer wrong"}, f"/live/{CHANNEL}.ts"),
    ]
    for headers, path in cases:
        resp = await locked.get(path, headers=headers)
        assert resp.status == 401, (headers, path)
        body = await resp.text()
        assert "API key" in body
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "WWW-Authenticate" in resp.headers


@pytest.mark.parametrize("how", ["header", "bearer", "query", "admin"])
async def test_right_key_is_accepted_every_way(how: str, locked: TestClient[Any, Any]) -> None:
    headers: dict[str, str] = {}
    path = f"/live/{CHANNEL}.m3u8"
    if how == "header":
        headers["X-API-Key"] = KEY
    elif how == "bearer":
        headers["Authorization"] = f"Bearer {KEY}"
    elif how == "admin":
        headers["X-API-Key"] = ADMIN
    else:
        path += f"?api_key={KEY}"
    resp = await locked.get(path, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_probes_and_metrics_need_no_key(locked: TestClient[Any, Any]) -> None:
    assert (await locked.get("/healthz")).status == 200
    assert (await locked.get("/metrics")).status == 200
    assert (await locked.get("/readyz")).status in (200, 503)


async def test_segment_urls_work_without_a_key_until_their_token_expires(
    locked: TestClient[Any, Any],
) -> None:
    text = await (await locked.get(f"/live/{CHANNEL}.m3u8", headers={"X-API-Key": KEY})).text()
    uri = uris(text)[0]
    assert (await locked.get(uri)).status == 200  # players that cannot send headers still work
    scope, token, name = uri.split("/")[2:5]
    other = await locked.get(f"/hls/live.7183.720p/{token}/{name}")
    assert other.status == 403  # a token for one channel does not open another
    # the shortest token_ttl is 30 s (and expiries are rounded up to the hour): the same segment's
    # token, signed to have expired a second ago, stands for the wait
    signer = app_of(locked)[SIGNER_KEY]
    target = signer.verify(scope, token, now=time.time())
    assert target.expires >= time.time() + 30
    expired = signer.sign(scope, dataclasses.replace(target, expires=int(time.time()) - 1))
    assert (await locked.get(f"/hls/{scope}/{expired}/{name}")).status == 403


async def guide_built(client: TestClient[Any, Any]) -> None:
    async with asyncio.timeout(20):
        await app_of(client)[GUIDE_KEY].wait_for_build(1)


async def test_readyz_waits_for_the_first_guide_build(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    emulator.state.faults.slow_api(3.0, count=50, method="channel.listings")
    proxy = await proxy_factory(emulator)
    resp = await proxy.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert body["checks"]["nextpvr"] == "ok"
    assert "guide" in body["checks"]["guide"]
    emulator.state.faults.clear()
    await guide_built(proxy)
    assert (await proxy.get("/readyz")).status == 200


async def test_readyz_passes_with_a_working_nextpvr(proxy: TestClient[Any, Any]) -> None:
    await guide_built(proxy)
    resp = await proxy.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["ready"] is True
    assert body["checks"]["nextpvr"] == "ok"


async def test_readyz_fails_with_the_pin_named_when_it_is_wrong(emulator: Emulator,
                                                               proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, pin="000111")
    resp = await proxy.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["ready"] is False
    assert "PIN" in body["checks"]["nextpvr"]
    assert "000111" not in await resp.text()


async def test_readyz_fails_when_nextpvr_is_down(emulator_factory: EmulatorFactory,
                                                 proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **{"server.readiness_cache": 0})
    await guide_built(proxy)
    assert (await proxy.get("/readyz")).status == 200
    await emu.stop()
    resp = await proxy.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert "NextPVR" in body["checks"]["nextpvr"]
    assert "unreach" in body["checks"]["nextpvr"].lower() or "reach" in body["checks"]["nextpvr"].lower()


async def test_readyz_result_is_cached(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    await asyncio.gather(*(proxy.get("/readyz") for _ in range(20)))
    assert emulator.state.counters.api_calls["setting.list"] == 1


def test_key_matching_is_exact() -> None:
    assert key_matches(KEY, [KEY, ADMIN])
    assert key_matches(ADMIN, [KEY, ADMIN])
    assert not key_matches(KEY[:-1], [KEY])
    assert not key_matches(KEY + "x", [KEY])
    assert not key_matches(None, [KEY])
    assert not key_matches("x" * 10_000, [KEY])


def _config(host: str, keys: list[str]) -> Config:
    return proxy_config("http://127.0.0.1:8866", **{"server.host": host, "auth.api_keys": keys})


def test_warning_when_exposed_without_auth(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.security"):
        assert warn_if_exposed(_config("0.0.0.0", []))
    assert "authentication OFF" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="proxy.security"):
        assert not warn_if_exposed(_config("127.0.0.1", []))
        assert not warn_if_exposed(_config("0.0.0.0", [KEY]))
    assert "authentication OFF" not in caplog.text
    assert is_loopback("::1")
    assert not is_loopback("192.168.1.5")


async def test_client_limit_answers_503_beyond_it_and_probes_still_work(emulator: Emulator,
                                                                        proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"server.max_clients": 2})
    streams = [await proxy.get(f"/live/{CHANNEL}.ts") for _ in range(2)]
    assert [s.status for s in streams] == [200, 200]
    third = await proxy.get(f"/live/{CHANNEL}.ts")
    assert third.status == 503
    assert "Too many clients" in await third.text()
    assert third.headers["Retry-After"] == "5"
    assert (await proxy.get("/healthz")).status == 200
    assert (await proxy.get("/metrics")).status == 200
    for s in streams:
        s.close()
