"""The web page in real headless Chromium against the proxy in front of the emulator.

What a person sees: every channel with what is on now and next, a click that plays (the video's
clock advances), the guide grid, the status numbers (checked against ``/metrics`` and the
emulator's own tuner state), the API-key gate, the tuner-busy message and the recording actions.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from playwright.async_api import Page, Response

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS
from tests.browser import PageWatch, browser_fixture, page_fixture, page_watch_fixture  # noqa: F401
from tests.conftest import EmulatorFactory, ProxyFactory
from tests.test_metrics import samples, value

LOAD_MS = 20_000
PLAY_MS = 45_000


def url(client: TestClient[Any, Any], path: str = "/") -> str:
    return str(client.make_url(path))


async def open_view(page: Page, client: TestClient[Any, Any], view: str) -> None:
    await page.goto(url(client, f"/#{view}"))
    await page.wait_for_function(f"document.body.dataset.loaded === {view!r}", timeout=LOAD_MS)


async def wait_playing(page: Page, seconds: float = 2.0) -> None:
    await page.wait_for_function(f"document.getElementById('video').currentTime > {seconds}", timeout=PLAY_MS)


async def test_channel_list_shows_every_channel_with_now_and_next(emulator: Emulator,
                                                                  proxy: TestClient[Any, Any],
                                                                  page: Page) -> None:
    before = time.time()
    await open_view(page, proxy, "channels")
    after = time.time()
    guide = emulator.state.guide
    for channel in CHANNELS:
        row = page.locator(f"li.channel[data-channel='{channel.oid}']")
        await row.wait_for()
        assert await row.locator(".name").inner_text() == channel.name
        assert await row.locator(".num").inner_text() == channel.formatted_number
        now_text = await row.locator(".prog[data-role='now']").inner_text()
        # the page read the clock somewhere between before and after
        candidates = {guide.at(channel, before), guide.at(channel, after)}
        assert any(p.name in now_text for p in candidates), (channel.name, now_text)
        next_text = await row.locator(".prog[data-role='next']").inner_text()
        assert any(guide.at(channel, p.end).name in next_text for p in candidates), (channel.name, next_text)
        assert await row.locator("progress").count() == 1
        assert await row.locator(".viewers").inner_text() == "0 watching"


async def test_a_click_plays_the_channel(emulator: Emulator, proxy: TestClient[Any, Any], page: Page) -> None:
    await open_view(page, proxy, "channels")
    await page.click(f"button.play[data-channel='{CHANNELS[0].oid}']")
    await wait_playing(page)
    assert await page.locator("#player-title").inner_text() == f"{CHANNELS[0].formatted_number} {CHANNELS[0].name}"
    # hls.js played it (served by the proxy from node_modules), not the browser's own HLS
    assert await page.evaluate("typeof window.Hls") == "function"
    assert await page.locator("#player-message").inner_text() == ""
    # the keyboard reaches the same button
    await page.click("#player-close")
    assert not await page.locator("#player").is_visible()
    await page.focus(f"button.play[data-channel='{CHANNELS[1].oid}']")
    await page.keyboard.press("Enter")
    await wait_playing(page)


async def test_guide_shows_programmes_and_details(emulator: Emulator, proxy: TestClient[Any, Any],
                                                  page: Page) -> None:
    await open_view(page, proxy, "guide")
    guide = emulator.state.guide
    now = time.time()
    for channel in CHANNELS:
        titles = await page.locator(f".g-row[data-channel='{channel.oid}'] .g-title").all_inner_texts()
        expected = [p.name for p in guide.listings(channel, now, int(now), int(now) + 86400)]
        assert len(titles) >= len(expected) - 1 and titles[:3] == expected[:3], channel.name
    assert await page.locator(".g-now").count() == 1
    first = page.locator(f".g-row[data-channel='{CHANNELS[2].oid}'] .g-prog").first
    await first.click()
    dialog = page.locator("#details")
    await dialog.wait_for()
    on_now = guide.at(CHANNELS[2], time.time())
    # the page shows "title, en dash, episode" when the guide has an episode title
    shown = on_now.name + (f" \u2013 {on_now.subtitle}" if on_now.subtitle else "")
    assert await page.locator("#details-title").inner_text() == shown
    assert CHANNELS[2].name in await page.locator("#details-when").inner_text()
    assert not await page.locator("#details-record").is_visible()  # no admin key configured
    await page.keyboard.press("Escape")


async def test_status_numbers_equal_metrics_and_the_emulator(emulator: Emulator, proxy_factory: ProxyFactory,
                                                             page: Page) -> None:
    proxy = await proxy_factory(emulator, **{"ui.status_refresh": 1})
    await open_view(page, proxy, "channels")
    await page.click(f"button.play[data-channel='{CHANNELS[0].oid}']")
    await wait_playing(page)
    async with aiohttp.ClientSession() as http, http.get(url(proxy, f"/live/{CHANNELS[1].oid}.ts")) as ts:
        assert ts.status == 200
        await ts.content.readexactly(188 * 20)
        await emulator.state.wait_for(lambda: emulator.state.tuners.in_use == 2)
        total = emulator.config.tuners
        on_air = sum(1 for r in emulator.state.store.recordings.values() if r.status(time.time()) == "recording")
        busy = min(total, emulator.state.tuners.in_use + on_air)
        await page.click("#nav a[data-view='status']")
        # the view refreshes every second; NextPVR's answer is reused for up to 2 s
        await page.wait_for_function(
            f"document.querySelector(\"[data-field='tuners']\")?.textContent === '{busy} / {total}'",
            timeout=LOAD_MS)
        scrape = samples(await (await proxy.get("/metrics")).text())
        assert value(scrape, "nextpvr_proxy_tuners_in_use") == emulator.state.tuners.in_use == 2
        assert await page.locator("[data-field='reachable']").inner_text() == "yes"
        assert await page.locator("[data-field='version']").inner_text() == "7.1.3"
        hls_row = page.locator(f"tr[data-stream='channel-{CHANNELS[0].oid}-transcode']")
        ts_row = page.locator(f"tr[data-stream='channel-{CHANNELS[1].oid}-ts']")
        assert await hls_row.locator("[data-field='viewers']").inner_text() == \
            str(int(value(scrape, "nextpvr_proxy_active_viewers", kind="hls"))) == "1"
        assert await ts_row.locator("[data-field='viewers']").inner_text() == \
            str(int(value(scrape, "nextpvr_proxy_active_viewers", kind="ts"))) == "1"
        assert await page.locator("[data-field='viewers']").first.inner_text() == "2"
        assert "transcode (720p)" in await hls_row.locator("[data-field='mode']").inner_text()
        await page.wait_for_function(
            f"/bit\\/s/.test(document.querySelector(\"tr[data-stream='channel-{CHANNELS[1].oid}-ts'] "
            "[data-field='bitrate']\")?.textContent || '')", timeout=LOAD_MS)
        memory = await page.locator("[data-field='memory']").inner_text()
        assert re.fullmatch(r"\d+\.\d MiB", memory), memory


async def test_with_api_keys_nothing_shows_before_the_key(emulator: Emulator, proxy_factory: ProxyFactory,
                                                          page: Page, page_watch: PageWatch) -> None:
    key = "page-key-123456"
    proxy = await proxy_factory(emulator, **{"auth.api_keys": [key]})
    seen: list[Response] = []
    page.on("response", lambda r: seen.append(r))
    await page.goto(url(proxy, "/"))
    await page.locator("#keygate").wait_for()
    body = await page.content()
    for channel in CHANNELS:
        assert channel.name not in body
    assert not await page.locator("#nav").is_visible()
    assert all(not r.url.split("?")[0].endswith(("/api/channels", "/api/epg", "/api/status")) for r in seen)
    assert {r.status for r in seen if "/api/" in r.url} <= {401}

    page_watch.allow("401")  # the wrong key's refusal is logged by the browser
    await page.fill("#keyinput", "wrong-key-000000")
    await page.press("#keyinput", "Enter")
    await page.locator("#keyerror").filter(has_text="not accepted").wait_for()
    assert CHANNELS[0].name not in await page.content()

    await page.fill("#keyinput", key)
    await page.press("#keyinput", "Enter")
    await page.wait_for_function("document.body.dataset.loaded === 'channels'", timeout=LOAD_MS)
    assert await page.locator("li.channel").count() == len(CHANNELS)
    await page.click(f"button.play[data-channel='{CHANNELS[0].oid}']")
    await wait_playing(page)
    # kept in the browser: a reload goes straight to the channels
    await page.reload()
    await page.wait_for_function("document.body.dataset.loaded === 'channels'", timeout=LOAD_MS)
    assert not await page.locator("#keygate").is_visible()


async def test_all_tuners_busy_says_when_to_try_again(emulator_factory: EmulatorFactory,
                                                      proxy_factory: ProxyFactory, page: Page,
                                                      page_watch: PageWatch) -> None:
    emulator = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emulator, **{"nextpvr.no_tuner_retry_after": 7})
    page_watch.allow("503")
    async with aiohttp.ClientSession() as http, http.get(url(proxy, f"/live/{CHANNELS[1].oid}.ts")) as ts:
        await ts.content.readexactly(188)
        await open_view(page, proxy, "channels")
        await page.click(f"button.play[data-channel='{CHANNELS[0].oid}']")
        message = page.locator("#player-message.error")
        await message.wait_for()
        assert await message.inner_text() == "All tuners are busy. Try again in 7 s."


async def test_without_any_hls_player_the_page_offers_the_url(emulator: Emulator, proxy_factory: ProxyFactory,
                                                               page: Page, tmp_path: Any) -> None:
    proxy = await proxy_factory(emulator, **{"ui.hlsjs_path": str(tmp_path / "missing.js")})
    settings = await (await proxy.get("/ui/settings.json")).json()
    assert settings["hlsjs_url"] is None
    assert (await proxy.get("/ui/vendor/hls.min.js")).status == 404
    # a browser with neither MSE nor native HLS (the page must not pretend it can play)
    await page.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;"
                               "HTMLMediaElement.prototype.canPlayType = () => '';")
    await open_view(page, proxy, "channels")
    await page.click(f"button.play[data-channel='{CHANNELS[0].oid}']")
    link = page.locator("#player-message a")
    await link.wait_for()
    assert await link.get_attribute("href") == url(proxy, f"/live/{CHANNELS[0].oid}.ts")


async def test_without_hlsjs_chromium_plays_natively_with_the_key(emulator: Emulator, proxy_factory: ProxyFactory,
                                                                   page: Page, tmp_path: Any) -> None:
    """Debian's Chromium has its own HLS (canPlayType says "maybe"): with no hls.js the page uses
    it, and since a <video> cannot send a header, the key goes into the playlist URL."""
    key = "native-key-123456"
    proxy = await proxy_factory(emulator, **{"ui.hlsjs_path": str(tmp_path / "missing.js"), "auth.api_keys": [key]})
    await page.add_init_script(f"localStorage.setItem('nextpvr-proxy.api-key', {key!r})")
    await open_view(page, proxy, "channels")
    await page.click(f"button.play[data-channel='{CHANNELS[0].oid}']")
    await wait_playing(page)
    assert await page.evaluate("typeof window.Hls") == "undefined"
    src = await page.evaluate("document.getElementById('video').src")
    assert src == url(proxy, f"/live/{CHANNELS[0].oid}.m3u8?api_key={key}")


async def test_recordings_play_delete_and_schedule_with_the_admin_key(emulator: Emulator,
                                                                      proxy_factory: ProxyFactory,
                                                                      page: Page) -> None:
    admin = "admin-key-7654321"
    proxy = await proxy_factory(emulator, **{"auth.admin_key": admin})
    await page.add_init_script(f"localStorage.setItem('nextpvr-proxy.admin-key', {admin!r})")
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await open_view(page, proxy, "recordings")
    ready = [r for r in emulator.state.store.recordings.values() if r.status(time.time()) == "ready"]
    assert ready
    for rec in ready:
        await page.locator(f"li.rec[data-recording='{rec.id}']").wait_for()
    victim = ready[0]
    row = page.locator(f"li.rec[data-recording='{victim.id}']")
    await row.locator("button", has_text="Play").click()
    await wait_playing(page, 1.0)
    await row.locator("button", has_text="Delete").click()
    await row.wait_for(state="detached")
    # the player was closed before the delete: its segments are gone (a 404 would be a page error)
    assert await page.locator("#player").is_hidden()
    assert victim.id not in emulator.state.store.recordings or \
        emulator.state.store.recordings[victim.id].status(time.time()) == "deleted"

    # schedule the next programme of a channel from the guide, with the configured padding
    await page.click("#nav a[data-view='guide']")
    await page.wait_for_function("document.body.dataset.loaded === 'guide'", timeout=LOAD_MS)
    later = page.locator(f".g-row[data-channel='{CHANNELS[3].oid}'] .g-prog").nth(2)
    event_id = int(await later.get_attribute("data-event") or 0)
    await later.click()
    await page.click("#details-record")
    await page.locator("#details-result").filter(has_text="Scheduled").wait_for()
    scheduled = [r for r in emulator.state.store.recordings.values() if r.epg_event_id == event_id]
    assert len(scheduled) == 1
    assert (scheduled[0].pre_padding, scheduled[0].post_padding) == (1, 2)
