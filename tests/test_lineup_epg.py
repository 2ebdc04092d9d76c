"""``/epg.xml``: XMLTV that validates against the XMLTV DTD (tests/resources/xmltv.dtd, checked with
lxml), built in the background and served from memory with ETag/Last-Modified and gzip.

Readers this has to satisfy: Jellyfin's XmlTvReader (jellyfin/Jellyfin.XmlTv,
src/Jellyfin.XmlTv/XmlTvReader.cs) takes a channel's name from its first ``display-name`` and
its number from any ``display-name`` that parses as a number (``SetChannelNumber``), parses
``start``/``stop`` as ``yyyyMMddHHmmss zzz``, reads ``category``, ``episode-num``, ``new``,
``previously-shown``, ``date`` and ``rating``.
"""

from __future__ import annotations

import asyncio
import calendar
import email.utils
import gzip
import re
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree  # test oracle: a validating XML parser
from yarl import URL

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS, Programme
from proxy.lineup.guide import GuideCache
from proxy.lineup.xmltv import XMLTV_TAIL, episode_numbers, programme_elements, xmltv_head, xmltv_time
from proxy.nextpvr.models import Channel, Listing
from proxy.web.lineup import GUIDE_KEY, guide_readiness
from tests.conftest import ProxyFactory, app_of

DTD = etree.DTD(str(Path(__file__).parent / "resources" / "xmltv.dtd"))
XMLTV_TIME = re.compile(r"^\d{14} \+0000$")
DAYS = 3


def guide_of(proxy: TestClient[Any, Any]) -> GuideCache:
    return app_of(proxy)[GUIDE_KEY]


async def built(proxy: TestClient[Any, Any], count: int = 1) -> GuideCache:
    guide = guide_of(proxy)
    async with asyncio.timeout(10):
        await guide.wait_for_build(count)
    return guide


def epoch(text: str) -> int:
    assert XMLTV_TIME.match(text), text
    return calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S"))


async def get_xml(proxy: TestClient[Any, Any], **kwargs: Any) -> Any:
    resp = await proxy.get("/epg.xml", **kwargs)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    return etree.fromstring(await resp.read())


class GatedNextPVR:
    """A NextPVR in front of the emulator: forwards every request, except that
    ``channel.listings`` waits while ``open`` is clear and fails for ``failing`` channels,
    and ``channel.icon`` answers 404 for ``missing_icons``. ``calls`` counts methods."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.open = asyncio.Event()
        self.open.set()
        #: set when a channel.listings request is being held at the gate
        self.held = asyncio.Event()
        self.failing: set[str] = set()
        self.missing_icons: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        method = request.query.get("method", "")
        self.calls[method] += 1
        if method == "channel.icon" and request.query.get("channel_id") in self.missing_icons:
            return web.Response(status=404, text="Not Found\n")
        if method == "channel.listings":
            if request.query.get("channel_id") in self.failing:
                return web.Response(status=500, text="listings broke\n")
            if not self.open.is_set():
                self.held.set()
                await self.open.wait()
        async with self.session.get(URL(self.upstream + request.raw_path, encoded=True)) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status,
                                headers={"Content-Type": upstream.headers.get("Content-Type", "text/xml")})

    async def __aenter__(self) -> GatedNextPVR:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # no access log: request lines carry session ids
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.open.set()
        await self.runner.cleanup()
        await self.session.close()


@pytest.fixture
async def gated(emulator: Emulator) -> AsyncIterator[GatedNextPVR]:
    async with GatedNextPVR(emulator.url) as fake:
        yield fake


async def test_guide_validates_against_the_xmltv_dtd_and_covers_every_channel(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory(emulator, **{"guide.days": DAYS})
    await built(proxy)
    before = time.time()
    root = await get_xml(proxy)
    assert DTD.validate(root), DTD.error_log.filter_from_errors()
    base = str(proxy.make_url("")).rstrip("/")

    channels = {c.get("id"): c for c in root.iter("channel")}
    assert list(channels) == [f"{c.oid}.nextpvr" for c in CHANNELS]  # ordered by number
    for ch in CHANNELS:
        element = channels[f"{ch.oid}.nextpvr"]
        assert [d.text for d in element.iter("display-name")] == [ch.name, ch.formatted_number]
        icons = [i.get("src") for i in element.iter("icon")]
        assert icons == ([] if ch.icon is None else [f"{base}/icons/{ch.oid}"])

    horizon = before + DAYS * 86400
    for ch in CHANNELS:
        progs = [p for p in root.iter("programme") if p.get("channel") == f"{ch.oid}.nextpvr"]
        assert progs, ch.name
        starts = [epoch(p.get("start")) for p in progs]
        stops = [epoch(p.get("stop")) for p in progs]
        assert starts == sorted(starts)
        assert starts[0] <= before  # what is on now is listed
        # contiguous, and reaching the configured number of days ahead (not far beyond)
        assert all(stops[i] == starts[i + 1] for i in range(len(progs) - 1))
        assert stops[-1] >= horizon - 1
        assert starts[-1] < horizon + 60
        want = {(p.start, p.end): p for p in emulator.state.guide.listings(ch, before, int(before),
                                                                           int(horizon) - 3600)}
        got = {(epoch(p.get("start")), epoch(p.get("stop"))): p for p in progs}
        assert set(want) <= set(got)
        for key, expected in want.items():
            check_programme(got[key], expected)


def check_programme(element: Any, prog: Programme) -> None:
    assert element.findtext("title") == prog.name
    assert (element.findtext("sub-title") or "") == prog.subtitle
    assert element.findtext("desc") == prog.description
    assert [c.text for c in element.iter("category")] == list(prog.genres)
    numbers = {e.get("system"): e.text for e in element.iter("episode-num")}
    if prog.season and prog.episode:
        assert numbers == {"xmltv_ns": f"{prog.season - 1}.{prog.episode - 1}.",
                           "onscreen": f"S{prog.season:02d}E{prog.episode:02d}"}
    else:
        assert numbers == {}
    assert (element.find("new") is not None) == prog.firstrun
    if prog.year:
        assert element.findtext("date") == str(prog.year)
    assert (element.findtext("rating/value") or "") == prog.rating


def test_times_and_episode_numbers() -> None:
    assert xmltv_time(1735732800) == "20250101120000 +0000"
    assert episode_numbers(2, 5) == [("xmltv_ns", "1.4."), ("onscreen", "S02E05")]
    assert episode_numbers(None, 3) == [("xmltv_ns", ".2."), ("onscreen", "E03")]
    assert episode_numbers(4, None) == [("xmltv_ns", "3.."), ("onscreen", "S04")]
    assert episode_numbers(0, 0) == []
    assert episode_numbers(None, None) == []


async def test_etag_last_modified_and_gzip(proxy: TestClient[Any, Any]) -> None:
    await built(proxy)
    plain = await proxy.get("/epg.xml", headers={"Accept-Encoding": "identity"})
    body = await plain.read()
    assert plain.status == 200 and "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    etag, last_modified = plain.headers["ETag"], plain.headers["Last-Modified"]
    assert etag.startswith('"') and email.utils.parsedate_to_datetime(last_modified)

    url = proxy.make_url("/epg.xml")
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        async with raw.get(url, headers={"Accept-Encoding": "gzip, deflate"}) as resp:
            compressed = await resp.read()
            assert resp.headers["Content-Encoding"] == "gzip"
            assert int(resp.headers["Content-Length"]) == len(compressed)
            gz_etag = resp.headers["ETag"]
        async with raw.get(url, headers={"Accept-Encoding": "gzip;q=0, br"}) as resp:
            assert "Content-Encoding" not in resp.headers
    assert gz_etag != etag
    assert len(compressed) < len(body) / 3
    # one gzip member whose CRC and length check out, holding exactly the plain document
    inflater = zlib.decompressobj(wbits=31)
    assert inflater.decompress(compressed) == body and inflater.eof and not inflater.unused_data
    assert gzip.decompress(compressed) == body

    for tag in (etag, gz_etag, f'W/{etag}', f'"nope", {gz_etag}'):
        resp = await proxy.get("/epg.xml", headers={"If-None-Match": tag})
        assert resp.status == 304, tag
        assert await resp.read() == b""
    assert (await proxy.get("/epg.xml", headers={"If-None-Match": '"other"'})).status == 200
    assert (await proxy.get("/epg.xml", headers={"If-Modified-Since": last_modified})).status == 304
    older = email.utils.formatdate(time.time() - 86400, usegmt=True)
    assert (await proxy.get("/epg.xml", headers={"If-Modified-Since": older})).status == 200
    head = await proxy.head("/epg.xml", headers={"Accept-Encoding": "identity"})
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(body)


async def test_unchanged_rebuild_keeps_the_etag(proxy: TestClient[Any, Any]) -> None:
    guide = await built(proxy)
    first = (await proxy.get("/epg.xml")).headers["ETag"]
    guide.refresh_soon()
    await built(proxy, 2)
    assert (await proxy.get("/epg.xml")).headers["ETag"] == first


async def test_503_with_retry_after_until_the_first_build(
    gated: GatedNextPVR, proxy_factory: ProxyFactory
) -> None:
    gated.open.clear()
    proxy = await proxy_factory(gated.url)
    async with asyncio.timeout(10):
        await gated.held.wait()
    resp = await proxy.get("/epg.xml")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "10"
    assert "guide" in await resp.text()
    assert not guide_of(proxy).ready.is_set()
    readiness = guide_readiness(guide_of(proxy))
    ok, detail = await readiness()
    assert not ok and "first guide build" in detail
    gated.open.set()
    async with asyncio.timeout(10):
        await guide_of(proxy).ready.wait()
    assert (await proxy.get("/epg.xml")).status == 200
    ok, detail = await readiness()
    assert ok and detail.startswith("ok")


async def test_served_from_cache_while_nextpvr_is_slow(
    gated: GatedNextPVR, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory(gated.url)
    guide = await built(proxy)
    before = await (await proxy.get("/epg.xml")).read()
    gated.open.clear()
    guide.refresh_soon()
    async with asyncio.timeout(10):
        await gated.held.wait()  # a rebuild is now stuck on NextPVR
    started = time.monotonic()
    async with asyncio.timeout(1):
        resp = await proxy.get("/epg.xml")
        during = await resp.read()
    assert time.monotonic() - started < 0.5
    assert resp.status == 200 and during == before
    assert guide.builds == 1
    gated.open.set()
    await built(proxy, 2)


async def test_a_channel_whose_listings_fail_is_skipped(
    gated: GatedNextPVR, proxy_factory: ProxyFactory
) -> None:
    gated.failing = {"7183"}
    proxy = await proxy_factory(gated.url)
    guide = await built(proxy)
    root = await get_xml(proxy)
    assert DTD.validate(root), DTD.error_log.filter_from_errors()
    channels_with_programmes = {p.get("channel") for p in root.iter("programme")}
    assert channels_with_programmes == {f"{c.oid}.nextpvr" for c in CHANNELS} - {"7183.nextpvr"}
    assert "7183.nextpvr" in {c.get("id") for c in root.iter("channel")}
    assert guide.skipped == (7183,)
    assert guide.last_error is None


async def test_no_listings_at_all_is_a_failed_build(gated: GatedNextPVR, proxy_factory: ProxyFactory) -> None:
    gated.failing = {str(c.oid) for c in CHANNELS}
    proxy = await proxy_factory(gated.url)
    guide = guide_of(proxy)
    async with asyncio.timeout(10):
        await guide.wait_for_attempts(1)
    assert guide.builds == 0 and not guide.ready.is_set()
    assert guide.last_error is not None and "listings" in guide.last_error
    resp = await proxy.get("/epg.xml")
    assert resp.status == 503 and "listings" in await resp.text()


async def test_unreachable_nextpvr_is_reported(proxy_factory: ProxyFactory, unused_tcp_port: int) -> None:
    proxy = await proxy_factory(f"http://127.0.0.1:{unused_tcp_port}")
    guide = guide_of(proxy)
    async with asyncio.timeout(10):
        await guide.wait_for_attempts(1)
    assert not guide.ready.is_set()
    assert guide.last_error is not None and "NextPVR" in guide.last_error
    assert (await proxy.get("/epg.xml")).status == 503


def test_hostile_text_still_validates() -> None:
    nasty = 'A & B <i>"quoted"</i>\n\x01\x0bline\ud800 ]]>'
    channel = Channel(id=1, name=nasty, number=1, formatted_number="1", has_icon=True)
    listing = Listing(id=9, channel_id=1, title=nasty, subtitle=nasty, description=nasty, start=1735732800,
                      end=1735736400, genres=(nasty, "", nasty), season=0, episode=3, rating=nasty)
    empty = Listing(id=10, channel_id=1, title="", start=1735736400, end=1735736400)  # zero length: dropped
    doc = (xmltv_head([channel], base='http://p"x', query="?api_key=a&b", generated=0)
           + "".join(programme_elements(channel, [listing, empty])) + XMLTV_TAIL).encode()
    root = etree.fromstring(doc)
    assert DTD.validate(root), DTD.error_log.filter_from_errors()
    assert root.find("channel/icon").get("src") == 'http://p"x/icons/1?api_key=a&b'
    programmes = root.findall("programme")
    assert len(programmes) == 1
    assert programmes[0].findtext("title") == 'A & B <i>"quoted"</i> line ]]>'
    assert [c.text for c in programmes[0].iter("category")] == ['A & B <i>"quoted"</i> line ]]>']
    assert {e.get("system"): e.text for e in programmes[0].iter("episode-num")} == {
        "xmltv_ns": ".2.", "onscreen": "E03"}
