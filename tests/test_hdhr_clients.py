"""The whole HDHomeRun surface walked the way Plex, Jellyfin and Emby walk it (quirks from
../shared/packaging.md and the servers' tuner-host code as described in tests/test_hdhr.py):

- Plex: ``discover.json`` (stable DeviceID, integer TunerCount), ``lineup_status.json``,
  ``POST /lineup.post?scan=start`` with a body, ``LineupURL``, ``device.xml`` with ``URLBase``
  directly under ``<root>``, then the stream; 503 + ``X-HDHomeRun-Error`` when tuners are busy.
- Jellyfin: ModelNumber with "hdtc" (it then offers transcode profiles and appends
  ``?transcode=<profile>``), ``lineup.json`` without DRM channels and with VideoCodec/AudioCodec
  once known, a HEAD on each stream URL (M3U sharing needs ``video/MP2T``; a hanging HEAD stalls
  tuning), then the stream with its profile.
- Emby: ``discover.json``, ``lineup.json``, the stream with ``?duration=``.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from yarl import URL

from proxy.app import create_app
from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS
from proxy.lineup.hdhr import TRANSCODE_PROFILES, device_id_is_valid
from proxy.web.hdhr import CODECS_KEY
from tests.conftest import EmulatorFactory, ProxyFactory, proxy_config

UPNP = "{urn:schemas-upnp-org:device-1-0}"
TV = [c for c in CHANNELS if c.type == 1]
#: a HEAD "at once": far below Jellyfin's ~100 s stall, and no tuner is opened for it
HEAD_SECONDS = 2.0


async def get_json(client: TestClient[Any, Any], url: str) -> Any:
    resp = await client.session.get(url)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    return json.loads(await resp.text())


async def read_ts(client: TestClient[Any, Any], url: str, packets: int = 50) -> bytes:
    async with client.session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].lower() == "video/mp2t"
        data = await resp.content.readexactly(188 * packets)
    assert data[::188] == b"\x47" * packets
    return data


async def stream_released(emulator: Emulator) -> None:
    await emulator.state.wait_for(lambda: emulator.state.live_streams_active == 0, 15)


async def test_plex_walks_discover_scan_lineup_device_and_tunes(emulator_factory: EmulatorFactory,
                                                                proxy_factory: ProxyFactory) -> None:
    emulator = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emulator)
    discover = await get_json(proxy, str(proxy.make_url("/discover.json")))
    assert device_id_is_valid(discover["DeviceID"]) and isinstance(discover["TunerCount"], int)
    assert discover == await get_json(proxy, str(proxy.make_url("/discover.json")))  # stable
    status = await get_json(proxy, discover["BaseURL"] + "/lineup_status.json")
    assert status["ScanInProgress"] == 0 and status["ScanPossible"] == 1 and status["Source"] in status["SourceList"]
    scan = await proxy.session.post(discover["BaseURL"] + "/lineup.post?scan=start", data=b"scan=start")
    assert scan.status == 200
    lineup = await get_json(proxy, discover["LineupURL"])
    assert [e["GuideNumber"] for e in lineup] == [c.formatted_number for c in TV]
    device = ET.fromstring(await (await proxy.session.get(discover["BaseURL"] + "/device.xml")).text())
    assert device.tag == f"{UPNP}root"
    assert [child.tag for child in device].count(f"{UPNP}URLBase") == 1
    assert device.find(f"{UPNP}URLBase").text == discover["BaseURL"]  # type: ignore[union-attr]

    first, second = lineup[0]["URL"], lineup[1]["URL"]
    async with proxy.session.get(first) as holder:
        assert (await holder.content.readexactly(188))[:1] == b"\x47"
        busy = await proxy.session.get(second)
        assert busy.status == 503 and busy.headers["X-HDHomeRun-Error"] == "805 All Tuners In Use"
    await stream_released(emulator)


async def test_jellyfin_walks_hdtc_heads_and_transcode_profiles(emulator: Emulator,
                                                                proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"ts.linger": 0})
    discover = await get_json(proxy, str(proxy.make_url("/discover.json")))
    assert "hdtc" in discover["ModelNumber"].lower()  # Jellyfin offers its transcode profiles
    lineup = await get_json(proxy, discover["LineupURL"])
    assert all("DRM" not in e for e in lineup)  # Jellyfin drops DRM channels
    assert all("VideoCodec" not in e and "AudioCodec" not in e for e in lineup)  # unknown: not guessed

    # a HEAD on every stream URL answers at once, says MPEG-TS and opens nothing at NextPVR
    m3u = await (await proxy.get("/playlist.m3u")).text()
    m3u_urls = [line for line in m3u.splitlines() if line.startswith("http")]
    hls_urls = [str(proxy.make_url(f"/live/{c.oid}.m3u8")) for c in CHANNELS]
    for url in [e["URL"] for e in lineup] + m3u_urls + hls_urls:
        async with asyncio.timeout(HEAD_SECONDS):
            head = await proxy.session.head(url)
        assert head.status == 200, url
        expected = "application/vnd.apple.mpegurl" if url.endswith(".m3u8") else "video/mp2t"
        assert head.headers["Content-Type"].lower() == expected, url
        if expected == "video/mp2t":
            assert head.headers["Content-Type"] == "video/MP2T"  # the spelling Jellyfin compares with
    assert emulator.state.tuners.in_use == 0 and emulator.state.live_streams_active == 0
    assert emulator.state.transcodes_active == 0
    assert (await proxy.session.head(str(proxy.make_url("/auto/v99.9")))).status == 404
    assert (await proxy.session.head(str(proxy.make_url("/live/999999.ts")))).status == 404

    # ?transcode=<profile>: each documented profile plays the original stream
    for profile in TRANSCODE_PROFILES:
        await read_ts(proxy, f"{lineup[0]['URL']}?transcode={profile}")
        await stream_released(emulator)
    bad = await proxy.session.get(f"{lineup[0]['URL']}?transcode=ultra")
    assert bad.status == 400 and "transcode" in await bad.text()
    assert emulator.state.tuners.in_use == 0


async def test_jellyfin_reads_codecs_once_the_codec_memory_knows_them(emulator: Emulator) -> None:
    app = create_app(proxy_config(emulator.url), registry=CollectorRegistry())
    known = {TV[0].oid: ("h264", "aac"), TV[1].oid: ("mpeg2", "ac3")}
    def codecs(channel_id: int) -> tuple[str, str] | None:
        return known.get(channel_id)

    app[CODECS_KEY] = codecs
    async with TestClient(TestServer(app)) as client:
        lineup = {e["GuideNumber"]: e for e in await get_json(client, str(client.make_url("/lineup.json")))}
    assert (lineup["4.1"]["VideoCodec"], lineup["4.1"]["AudioCodec"]) == ("H264", "AAC")
    assert (lineup["4.2"]["VideoCodec"], lineup["4.2"]["AudioCodec"]) == ("MPEG2", "AC3")
    assert "VideoCodec" not in lineup["5"]


async def test_emby_walks_discover_lineup_and_tunes_with_duration(emulator: Emulator,
                                                                  proxy: TestClient[Any, Any]) -> None:
    discover = await get_json(proxy, str(proxy.make_url("/discover.json")))
    lineup = await get_json(proxy, discover["BaseURL"] + "/lineup.json")
    entry = next(e for e in lineup if e["GuideNumber"] == "5")
    assert URL(entry["URL"]).path == "/auto/v5"
    await read_ts(proxy, entry["URL"] + "?duration=7200")
    await stream_released(emulator)


async def test_lineup_names_the_codecs_of_a_channel_once_its_pmt_was_seen(emulator: Emulator) -> None:
    """Wired for real: a remuxed channel's PMT feeds lineup.json (Jellyfin's media info)."""
    app = create_app(proxy_config(emulator.url, **{"hls.mode": "remux"}), registry=CollectorRegistry())
    async with TestClient(TestServer(app)) as client:
        url = str(client.make_url("/lineup.json"))
        before = {e["GuideNumber"]: e for e in await get_json(client, url)}
        assert all("VideoCodec" not in e for e in before.values())  # nothing seen yet: nothing claimed
        resp = await client.get(f"/live/{TV[0].oid}.m3u8")
        assert resp.status == 200
        after = {e["GuideNumber"]: e for e in await get_json(client, url)}
    entry = after[TV[0].formatted_number]
    assert (entry["VideoCodec"], entry["AudioCodec"]) == ("H264", "AAC")
    assert "VideoCodec" not in after[TV[1].formatted_number]
