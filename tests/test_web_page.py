"""The web page's files, its settings and the JSON it reads (/api/status, /api/epg) over HTTP."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS
from proxy.web.page import UI_DIR
from tests.conftest import ProxyFactory


async def test_page_and_files_are_public_and_hold_no_data(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"auth.api_keys": ["a-long-key-1"]})
    index = await proxy.get("/")
    assert index.status == 200 and index.content_type == "text/html"
    text = await index.text()
    assert text == (UI_DIR / "index.html").read_text()
    assert all(c.name not in text for c in CHANNELS)
    js = await proxy.get("/ui/main.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert js.headers["X-Content-Type-Options"] == "nosniff"
    again = await proxy.get("/ui/main.js", headers={"If-None-Match": js.headers["ETag"]})
    assert again.status == 304
    hlsjs = await proxy.get("/ui/vendor/hls.min.js")
    npm_copy = UI_DIR.parents[2] / "node_modules" / "hls.js" / "dist" / "hls.min.js"
    assert hlsjs.status == 200 and await hlsjs.read() == npm_copy.read_bytes()
    settings = await (await proxy.get("/ui/settings.json")).json()
    assert settings == {"auth": True, "admin": False, "hlsjs_url": "/ui/vendor/hls.min.js", "status_refresh": 5.0,
                        "pre_padding": 1, "post_padding": 2, "timeshift": False}
    assert (await proxy.get("/ui/page.py")).status == 404  # only the page's own files
    assert (await proxy.get("/ui/nothing.js")).status == 404
    # the data is not public
    for path in ("/api/status", "/api/epg", "/api/channels"):
        assert (await proxy.get(path)).status == 401, path
    assert (await proxy.get("/api/status", headers={"X-API-Key": "a-long-key-1"})).status == 200


async def test_ui_off_and_hlsjs_elsewhere(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    off = await proxy_factory(emulator, **{"ui.enabled": False})
    assert (await off.get("/")).status == 404
    assert (await off.get("/api/status")).status == 200  # the API stays
    cdn = await proxy_factory(emulator, **{"ui.hlsjs_url": "https://cdn.example/hls.min.js"})
    assert (await (await cdn.get("/ui/settings.json")).json())["hlsjs_url"] == "https://cdn.example/hls.min.js"
    assert (await cdn.get("/ui/vendor/hls.min.js")).status == 404


async def test_status_lists_running_streams_by_mode(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    idle = await (await proxy.get("/api/status")).json()
    assert idle["nextpvr"] == {"reachable": True, "error": None, "version": "7.1.3",
                               "tuners_total": emulator.config.tuners,
                               "tuners_in_use": idle["nextpvr"]["tuners_in_use"]}
    assert idle["streams"] == [] and idle["proxy"]["memory_bytes"] > 10_000_000
    playlist = await proxy.get(f"/live/{CHANNELS[0].oid}.m3u8")
    assert playlist.status == 200
    async with proxy.get(f"/live/{CHANNELS[1].oid}.ts") as ts:
        await ts.content.readexactly(188 * 10)
        body = await (await proxy.get("/api/status")).json()
    modes = {(s["id"], s["mode"]): s for s in body["streams"]}
    assert set(modes) == {(CHANNELS[0].oid, "transcode"), (CHANNELS[1].oid, "ts")}
    assert modes[(CHANNELS[0].oid, "transcode")]["profile"] == "720p"
    assert modes[(CHANNELS[0].oid, "transcode")]["viewers"] == 1
    assert modes[(CHANNELS[1].oid, "ts")]["viewers"] == 1
    assert body["proxy"]["viewers"] == {"transcode": 1, "ts": 1}


async def test_status_shows_a_remuxed_channel_once_as_remux(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    channel = 7181  # H.264: the proxy packages it itself
    playlist = await proxy.get(f"/live/{channel}.m3u8", params={"mode": "remux"})
    assert playlist.status == 200
    body = await (await proxy.get("/api/status")).json()
    rows = [(s["id"], s["mode"]) for s in body["streams"]]
    assert rows == [(channel, "remux")]  # the TS connection it reads is not listed a second time
    (row,) = body["streams"]
    assert row["viewers"] == 1
    assert row["upstream_bps"] is None or row["upstream_bps"] > 0
    async with proxy.get(f"/live/{channel}.ts") as ts:
        await ts.content.readexactly(188 * 10)
        body = await (await proxy.get("/api/status")).json()
    assert sorted((s["id"], s["mode"]) for s in body["streams"]) == [(channel, "remux"), (channel, "ts")]
    assert emulator.state.live_streams_active == 1  # one upstream for both kinds of viewer


async def test_nextpvr_down_shows_as_unreachable(proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory("http://127.0.0.1:9")
    body = await (await proxy.get("/api/status")).json()
    assert body["nextpvr"]["reachable"] is False and body["nextpvr"]["error"]
    assert "127.0.0.1" not in str(body)


async def test_epg_covers_every_channel(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    now = int(time.time())
    body = await (await proxy.get("/api/epg", params={"start": now, "end": now + 3 * 3600})).json()
    assert [row["channel_id"] for row in body["channels"]] == [c.oid for c in CHANNELS]
    for row, channel in zip(body["channels"], CHANNELS, strict=True):
        expected = [p.name for p in emulator.state.guide.listings(channel, now, now, now + 3 * 3600)]
        assert [x["title"] for x in row["listings"]] == expected
    too_long = await proxy.get("/api/epg", params={"start": now, "end": now + 3 * 86400})
    assert too_long.status == 400 and (await too_long.json())["field"] == "end"
