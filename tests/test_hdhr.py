"""HDHomeRun emulation, checked against what the documentation says a device serves and what Plex
and Jellyfin read from it.

Sources:

- Silicondust, "HDHomeRun HTTP Development Guide" (info.hdhomerun.com/info/http_api): the
  lineup "can be queried using ... /lineup.json"; per program it returns "GuideNumber (virtual
  channel number). For ATSC the number will be 'n.n' format", "GuideName in UTF-8 format" and
  "URL for sourcing the video for this channel", e.g. ``http://192.168.0.100:5004/auto/v5.1``,
  where "the '/auto/' portion of the URL will select the first available tuner". "If the
  virtual channel number is not known the tuner will return '404 Not Found'. If the request
  cannot be completed at this time (for example all tuners are in use) the tuner will return
  '503 Service Unavailable'", and "there's an X-HDHomeRun-Error header that will be returned
  with more specific reasons" (805: All Tuners In Use).
- Silicondust's HTTP interface notes (hdhomerun_http_development.pdf, quoted in jblachly/dvr
  HDHomeRun_notes.md): ``/discover.json`` has FriendlyName, ModelNumber, FirmwareName,
  FirmwareVersion, DeviceID, DeviceAuth, BaseURL, LineupURL; ``/lineup_status.json`` has
  ScanInProgress, ScanPossible, Source, SourceList; a scan is requested with
  ``/lineup.post?scan=start``.
- Jellyfin (jellyfin/jellyfin, src/Jellyfin.LiveTv/TunerHosts/HdHomerun/): ``DiscoverResponse``
  reads FriendlyName, ModelNumber, FirmwareName, FirmwareVersion, DeviceID, DeviceAuth, BaseURL,
  LineupURL and ``int TunerCount``; ``Channels`` reads GuideNumber, GuideName, VideoCodec,
  AudioCodec, URL and the booleans Favorite, DRM, HD (numbers accepted through
  ``JsonBoolNumberConverter``); ``HdHomerunHost.GetLineup`` fetches ``LineupURL ?? BaseURL +
  "/lineup.json"`` and drops DRM channels, and plays ``URL`` as MPEG-TS over HTTP.
- Plex's media grabber documentation (plex-docs, "Remote Media Grabbers"): a device has "a make
  of Silicondust, model of hdhomeruntc_atsc and model number of HDTC-2US" and "tuners is the
  number of tuners the device has".
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS
from proxy.lineup.hdhr import derive_device_id, device_id_is_valid
from tests.conftest import EmulatorFactory, ProxyFactory
from tests.players import ffprobe_codecs, needs_ffmpeg

UPNP = "{urn:schemas-upnp-org:device-1-0}"
#: what Jellyfin's DiscoverResponse deserialises, with the JSON type it needs
JELLYFIN_DISCOVER = {"FriendlyName": str, "ModelNumber": str, "FirmwareName": str, "FirmwareVersion": str,
                     "DeviceID": str, "DeviceAuth": str, "BaseURL": str, "LineupURL": str, "TunerCount": int}


def base_of(proxy: TestClient[Any, Any]) -> str:
    return str(proxy.make_url("")).rstrip("/")


async def get_json(proxy: TestClient[Any, Any], path: str) -> Any:
    resp = await proxy.get(path)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    return json.loads(await resp.text())


async def test_discover_has_what_plex_and_jellyfin_read(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(tuners=3)
    proxy = await proxy_factory(emu)
    base = base_of(proxy)
    body = await get_json(proxy, "/discover.json")
    for field, kind in JELLYFIN_DISCOVER.items():
        assert isinstance(body[field], kind), field
        assert body[field] != "", field
    assert body["Manufacturer"] == "Silicondust"
    assert body["ModelNumber"] == "HDTC-2US" and body["FirmwareName"] == "hdhomeruntc_atsc"
    assert body["FriendlyName"] == "NextPVR HLS Proxy"
    assert body["BaseURL"] == base
    assert body["LineupURL"] == f"{base}/lineup.json"
    assert body["TunerCount"] == 3  # one per device in NextPVR's system.status
    assert device_id_is_valid(body["DeviceID"])
    # stable: derived from NextPVR's address, so the same after a restart
    again = await proxy_factory(emu)
    assert (await get_json(again, "/discover.json"))["DeviceID"] == body["DeviceID"]
    assert body["DeviceID"] == derive_device_id(emu.url)
    assert emu.state.counters.api_calls["system.status"] == 2  # once per proxy: cached
    await get_json(proxy, "/discover.json")
    assert emu.state.counters.api_calls["system.status"] == 2


async def test_configured_device_id_name_and_tuners(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"hdhomerun.device_id": "1043abcd", "hdhomerun.tuner_count": 5,
                                             "hdhomerun.friendly_name": "Den TV", "nextpvr.tuner_count": 2})
    body = await get_json(proxy, "/discover.json")
    assert (body["DeviceID"], body["TunerCount"], body["FriendlyName"]) == ("1043ABCD", 5, "Den TV")
    fallback = await proxy_factory(emulator, **{"nextpvr.tuner_count": 2})
    assert (await get_json(fallback, "/discover.json"))["TunerCount"] == 2
    assert emulator.state.counters.api_calls["system.status"] == 0


def test_derived_device_ids_pass_libhdhomeruns_check() -> None:
    assert device_id_is_valid("10439EFD")  # a real device's id (Silicondust's own example)
    assert not device_id_is_valid("10439EFE")
    ids = {derive_device_id(f"http://nextpvr-{i}:8866") for i in range(200)}
    assert len(ids) == 200 and all(device_id_is_valid(i) for i in ids)


async def test_lineup_lists_tv_channels_with_auto_urls(proxy: TestClient[Any, Any]) -> None:
    base = base_of(proxy)
    lineup = await get_json(proxy, "/lineup.json")
    tv = [c for c in CHANNELS if c.type == 1]
    # radio is left out: Plex and Jellyfin treat every lineup entry as a TV channel
    numbers = [e["GuideNumber"] for e in lineup]
    assert numbers == [c.formatted_number for c in tv] == ["4.1", "4.2", "5", "7", "12"]
    for entry, channel in zip(lineup, tv, strict=True):
        assert set(entry) <= {"GuideNumber", "GuideName", "URL", "HD"}
        assert entry["GuideName"] == channel.name
        assert entry["URL"] == f"{base}/auto/v{channel.formatted_number}"
        assert entry.get("HD", 0) == (1 if channel.name.endswith("-HD") else 0)
    status = await get_json(proxy, "/lineup_status.json")
    assert status == {"ScanInProgress": 0, "ScanPossible": 1, "Source": "Cable", "SourceList": ["Cable"]}
    scan = await proxy.post("/lineup.post", params={"scan": "start"})
    assert scan.status == 200


async def test_device_xml_carries_the_device_id(proxy: TestClient[Any, Any]) -> None:
    device_id = (await get_json(proxy, "/discover.json"))["DeviceID"]
    resp = await proxy.get("/device.xml")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(await resp.read())
    assert root.tag == f"{UPNP}root"
    assert root.findtext(f"{UPNP}URLBase") == base_of(proxy)
    device = root.find(f"{UPNP}device")
    assert device is not None
    assert device.findtext(f"{UPNP}manufacturer") == "Silicondust"
    assert device.findtext(f"{UPNP}modelNumber") == "HDTC-2US"
    assert device.findtext(f"{UPNP}serialNumber") == device_id
    udn = device.findtext(f"{UPNP}UDN") or ""
    assert udn.startswith(f"uuid:{device_id.lower()}-") and len(udn) == len("uuid:") + 36


async def test_disabled_emulation_has_no_routes(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"hdhomerun.enabled": False})
    for path in ("/discover.json", "/lineup.json", "/lineup_status.json", "/device.xml", "/auto/v4.1"):
        assert (await proxy.get(path)).status == 404, path
    assert emulator.state.counters.live_opened == 0


async def test_unknown_virtual_channel_is_404(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    assert (await proxy.get("/auto/v99.9")).status == 404
    assert (await proxy.get("/auto/vabc")).status == 404
    assert emulator.state.counters.live_opened == 0


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_auto_url_plays(proxy: TestClient[Any, Any]) -> None:
    lineup = await get_json(proxy, "/lineup.json")
    url = next(e["URL"] for e in lineup if e["GuideNumber"] == "4.1")
    async with asyncio.timeout(40):
        assert await ffprobe_codecs(url, timeout=30) == ["aac", "h264"]


async def test_all_tuners_busy_is_503_with_the_805_header(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emu)
    lineup = {e["GuideNumber"]: URL(e["URL"]).path for e in await get_json(proxy, "/lineup.json")}
    holder = await proxy.get(lineup["4.1"])  # takes the only tuner
    try:
        assert holder.status == 200
        assert holder.headers["Content-Type"] == "video/mp2t"
        assert (await holder.content.readexactly(188))[:1] == b"\x47"
        busy = await proxy.get(lineup["5"])
        assert busy.status == 503
        assert busy.headers["X-HDHomeRun-Error"] == "805 All Tuners In Use"
        assert int(busy.headers["Retry-After"]) > 0
        # the plain live route says the same without the HDHomeRun header
        plain = await proxy.get("/live/7183.ts")
        assert plain.status == 503 and "X-HDHomeRun-Error" not in plain.headers
    finally:
        holder.close()


async def test_discover_answers_while_nextpvr_is_down(proxy_factory: ProxyFactory, unused_tcp_port: int) -> None:
    proxy = await proxy_factory(f"http://127.0.0.1:{unused_tcp_port}")
    body = await get_json(proxy, "/discover.json")
    assert body["TunerCount"] == 2  # a guess until system.status answers, retried later
    assert device_id_is_valid(body["DeviceID"])
    assert (await proxy.get("/lineup.json")).status == 502
