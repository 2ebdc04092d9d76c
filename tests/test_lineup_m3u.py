"""``/playlist.m3u`` and ``/recordings.m3u``, read by an independent M3U parser (m3u-ipytv), and
every stream URL in the playlist played by ffprobe through the proxy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from ipytv import playlist as ipytv_playlist  # test oracle: an M3U parser that is not ours
from yarl import URL

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS
from proxy.lineup.m3u import channel_playlist
from proxy.nextpvr.models import Channel
from proxy.web.lineup import GUIDE_KEY
from tests.conftest import EmulatorFactory, ProxyFactory, app_of
from tests.players import ffprobe_codecs, needs_ffmpeg


def base_of(proxy: TestClient[Any, Any]) -> str:
    return str(proxy.make_url("")).rstrip("/")


async def fetch_playlist(proxy: TestClient[Any, Any], path: str = "/playlist.m3u",
                         **kwargs: Any) -> Any:
    resp = await proxy.get(path, **kwargs)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("audio/x-mpegurl")
    return ipytv_playlist.loads(await resp.text())


async def test_lineup_parses_in_number_order_with_ids_logos_and_groups(
    proxy: TestClient[Any, Any], emulator: Emulator
) -> None:
    base = base_of(proxy)
    pl = await fetch_playlist(proxy)
    assert pl.get_attributes()["url-tvg"] == f"{base}/epg.xml"
    entries = list(pl)
    # 4.1 < 4.2 < 5 < 7 < 10 < 12: minor numbers sort inside their major number
    assert [e.attributes["tvg-chno"] for e in entries] == ["4.1", "4.2", "5", "7", "10", "12"]
    by_id = {c.oid: c for c in CHANNELS}
    for entry in entries:
        url = URL(entry.url)
        channel_id = int(url.name.removesuffix(".ts"))
        channel = by_id[channel_id]
        assert entry.url == f"{base}/live/{channel_id}.ts"
        assert entry.name == channel.name
        assert entry.attributes["tvg-name"] == channel.name
        assert entry.attributes["tvg-id"] == f"{channel_id}.nextpvr"
        assert entry.duration == "-1"
        if channel.groups:
            # the first of the channel's NextPVR groups (channel.list&extras=true)
            assert entry.attributes["group-title"] == channel.groups[0]
        else:
            assert "group-title" not in entry.attributes
        if channel.icon is None:
            assert "tvg-logo" not in entry.attributes
        else:
            assert entry.attributes["tvg-logo"] == f"{base}/icons/{channel_id}"
            logo = await proxy.get(URL(entry.attributes["tvg-logo"]).path)
            assert logo.status == 200 and logo.headers["Content-Type"] == "image/png"
    radio = next(e for e in entries if e.attributes["tvg-chno"] == "10")
    assert radio.attributes["radio"] == "true"


async def test_groups_come_from_channel_groups_when_the_list_has_none(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    # the emulator's JSON channel.list carries no groups, as real servers' JSON seems not to
    proxy = await proxy_factory(emulator, **{"nextpvr.response_format": "json"})
    entries = {e.attributes["tvg-chno"]: e for e in await fetch_playlist(proxy)}
    assert entries["4.1"].attributes["group-title"] == "Favourites"
    assert entries["4.2"].attributes["group-title"] == "News"
    assert entries["7"].attributes["group-title"] == "Sports"
    assert "group-title" not in entries["12"].attributes
    assert emulator.state.counters.api_calls["channel.groups"] == 1


async def test_format_query_and_default(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator)
    assert all(e.url.endswith(".m3u8") for e in await fetch_playlist(proxy, params={"format": "hls"}))
    assert all(e.url.endswith(".ts") for e in await fetch_playlist(proxy, params={"format": "ts"}))
    bad = await proxy.get("/playlist.m3u", params={"format": "mp4"})
    assert bad.status == 400
    assert "format" in await bad.text()

    hls_default = await proxy_factory(emulator, **{"guide.default_stream_format": "hls"})
    assert all(e.url.endswith(".m3u8") for e in await fetch_playlist(hls_default))


async def test_public_base_url_wins(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"server.public_base_url": "https://tv.example.net/npvr/"})
    pl = await fetch_playlist(proxy, headers={"X-Forwarded-Host": "evil.example"})
    assert pl.get_attributes()["url-tvg"] == "https://tv.example.net/npvr/epg.xml"
    assert all(e.url.startswith("https://tv.example.net/npvr/live/") for e in pl)


async def test_forwarded_headers_only_when_trusted(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tv.example.net:8443, inner.lan"}
    untrusting = await proxy_factory(emulator)
    pl = await fetch_playlist(untrusting, headers=forwarded)
    assert all(e.url.startswith(base_of(untrusting) + "/live/") for e in pl)

    trusting = await proxy_factory(emulator, **{"server.trust_forwarded_headers": True})
    pl = await fetch_playlist(trusting, headers=forwarded)
    assert all(e.url.startswith("https://tv.example.net:8443/live/") for e in pl)
    # without the headers, the request's own Host
    pl = await fetch_playlist(trusting, headers={"Host": "proxy.lan:8080"})
    assert all(e.url.startswith("http://proxy.lan:8080/live/") for e in pl)

    for header, value in (("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Host", 'a"b')):
        resp = await trusting.get("/playlist.m3u", headers={header: value})
        assert resp.status == 400
        assert header in await resp.text()
    resp = await untrusting.get("/playlist.m3u", headers={"Host": 'x" onload="y'})
    assert resp.status == 400
    assert "Host" in await resp.text()


async def test_api_key_is_carried_into_every_url(proxy: TestClient[Any, Any]) -> None:
    pl = await fetch_playlist(proxy, params={"api_key": "k3y/with&odd=chars"})
    assert pl.get_attributes()["url-tvg"].endswith("/epg.xml?api_key=k3y%2Fwith%26odd%3Dchars")
    for entry in pl:
        assert URL(entry.url).query["api_key"] == "k3y/with&odd=chars"
        if "tvg-logo" in entry.attributes:
            assert URL(entry.attributes["tvg-logo"]).query["api_key"] == "k3y/with&odd=chars"


async def test_recordings_playlist_lists_completed_recordings(
    proxy: TestClient[Any, Any], emulator: Emulator
) -> None:
    now = time.time()
    ready = {r.id: r for r in emulator.state.store.recordings.values() if r.status(now) == "ready"}
    not_ready = {r.id for r in emulator.state.store.recordings.values() if r.status(now) != "ready"}
    assert ready and not_ready  # the emulator has recordings in every state
    base = base_of(proxy)
    entries = list(await fetch_playlist(proxy, "/recordings.m3u"))
    ids = [int(URL(e.url).name) for e in entries]
    assert sorted(ids) == sorted(ready)
    for entry, rec_id in zip(entries, ids, strict=True):
        rec = ready[rec_id]
        assert entry.url == f"{base}/recordings/{rec_id}"
        assert entry.duration == str(rec.duration)
        assert entry.name.startswith(rec.name)
        assert entry.attributes["group-title"] == rec.name
    starts = [ready[i].start for i in ids]
    assert starts == sorted(starts, reverse=True)


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_every_stream_url_plays(emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    """Every entry of the TS playlist, and one of the HLS playlist, decodes: H.264 + AAC, and
    MPEG-2 + AC-3 on the emulator's ATSC-like channel (7186).

    The emulator serves a video sample on every channel, the radio channel included, so
    all of them are expected to carry both streams."""
    emu = await emulator_factory(tuners=8)
    proxy = await proxy_factory(emu)
    ts_urls = [e.url for e in await fetch_playlist(proxy)]
    assert len(ts_urls) == len(CHANNELS)
    hls_urls = [e.url for e in await fetch_playlist(proxy, params={"format": "hls"})]
    probes = [ffprobe_codecs(url, timeout=30) for url in [*ts_urls, hls_urls[0]]]
    async with asyncio.timeout(60):
        results = await asyncio.gather(*probes)
    for url, codecs in zip([*ts_urls, hls_urls[0]], results, strict=True):
        expected = ["ac3", "mpeg2video"] if "/7186." in url else ["aac", "h264"]
        assert codecs == expected, url


async def test_with_api_keys_the_playlists_urls_work_with_the_key_they_carry(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    key = "playlist-key-1"
    proxy = await proxy_factory(emulator, **{"auth.api_keys": [key]})
    assert (await proxy.get("/playlist.m3u")).status == 401
    pl = await fetch_playlist(proxy, params={"api_key": key})
    guide = URL(pl.get_attributes()["url-tvg"])
    logo = URL(next(iter(pl)).attributes["tvg-logo"])
    assert guide.query["api_key"] == key and logo.query["api_key"] == key
    assert (await proxy.get(logo.path_qs)).status == 200
    assert (await proxy.get(logo.path)).status == 401
    async with asyncio.timeout(10):
        await app_of(proxy)[GUIDE_KEY].wait_for_build(1)
    assert (await proxy.get(guide.path_qs)).status == 200
    assert (await proxy.get(guide.path)).status == 401
    recordings = await fetch_playlist(proxy, "/recordings.m3u", params={"api_key": key})
    assert all(URL(e.url).query["api_key"] == key for e in recordings)


def test_hostile_names_cannot_break_an_entry() -> None:
    nasty = Channel(id=1, name='Evil "Name",\n#EXTINF:-1,Injected\r\nhttp://evil/\x00\ud800', number=3,
                    formatted_number="3", has_icon=True, groups=('Gr"oup\n',))
    text = channel_playlist([nasty], {1: nasty.groups}, base="http://p", fmt="ts")
    entries = list(ipytv_playlist.loads(text))
    assert len(entries) == 1
    assert entries[0].url == "http://p/live/1.ts"
    assert entries[0].attributes["group-title"] == "Gr'oup"
    assert "\n" not in entries[0].name and "#EXTINF" not in text.split("\n", 2)[2]
    text.encode()  # no lone surrogate left
