"""Low-Latency HLS on the proxy's own packager (issue 13): the playlist rules on the served text, parts,
blocking reloads (one wake for 500 blocked requests), and real players (ffmpeg, hls.js in Chromium).

The emulator writes its live TS in 4 KiB pieces here (like a tuner, not a second at a time), so a
part completes when its frames arrive.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Page

from proxy.config import ConfigError
from proxy.packager.ll_playlist import LiveEdge, PartEntry, ll_media_playlist
from proxy.packager.muxer import Muxer
from proxy.packager.playlist import PlaylistEntry, media_playlist
from proxy.packager.progress import Progress
from proxy.packager.segment import Segment
from tests.browser import PageWatch, browser_fixture, page_fixture, page_watch_fixture  # noqa: F401
from tests.conftest import EmulatorFactory, ProxyFactory, proxy_config
from tests.players import ffmpeg_decode, needs_ffmpeg, run
from tests.test_remux import H264, muxer_of

REMUX = {"hls.mode": "remux"}
SMOOTH = {"write_chunk": 4096}
PART_TARGET = 0.33
API_KEY = "ll-test-key-12345678"

_ATTR = re.compile(r'([A-Z-]+)=("[^"]*"|[^,]*)')


def attrs(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(line.split(":", 1)[1])}


def segments_of(text: str) -> tuple[int, list[dict[str, Any]], str | None]:
    """(media sequence, [{sequence, parts: [attrs], duration or None (growing)}], preload hint URI)."""
    sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
    segments: list[dict[str, Any]] = []
    current: dict[str, Any] = {"sequence": sequence, "parts": [], "duration": None}
    hint = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            current["parts"].append(attrs(line))
        elif line.startswith("#EXTINF:"):
            current["duration"] = float(line[8:].split(",")[0])
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            hint = attrs(line)["URI"]
            assert attrs(line)["TYPE"] == "PART"
        elif line and not line.startswith("#"):
            current["uri"] = line
            segments.append(current)
            current = {"sequence": current["sequence"] + 1, "parts": [], "duration": None}
    if current["parts"]:
        segments.append(current)
    return sequence, segments, hint


def check_ll_rules(text: str, *, live: bool = True) -> list[dict[str, Any]]:
    """The rules of RFC 8216bis and Apple's players on one served LL playlist; returns its segments."""
    assert "#EXT-X-VERSION:9" in text
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    part_target = float(attrs(re.search(r"#EXT-X-PART-INF:.*", text).group(0))["PART-TARGET"])  # type: ignore[union-attr]
    control = attrs(re.search(r"#EXT-X-SERVER-CONTROL:.*", text).group(0))  # type: ignore[union-attr]
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    assert float(control["PART-HOLD-BACK"]) >= 3 * part_target
    assert float(control["CAN-SKIP-UNTIL"]) >= 6 * target
    _, segments, hint = segments_of(text)
    if live:
        assert hint is not None, "a preload hint always while live"
    end = sum(s["duration"] or sum(float(p["DURATION"]) for p in s["parts"]) for s in segments)
    start = 0.0
    for segment in segments:
        parts = [float(p["DURATION"]) for p in segment["parts"]]
        complete = segment["duration"] is not None
        if parts:
            assert end - start <= 3 * target + 1e-6, "parts listed only for the last segments"
            assert segment["parts"][0].get("INDEPENDENT") == "YES", "a segment starts with a keyframe"
            # every part but a complete segment's last is at least 85 % of the target; none exceeds it
            middle = parts[:-1] if complete else parts
            assert all(0.85 * part_target <= d <= part_target + 1e-6 for d in middle), parts
            assert parts[-1] <= part_target + 1e-6
            if complete:
                assert abs(sum(parts) - segment["duration"]) < 0.01
        start += segment["duration"] or sum(parts)
    return segments


# -- the pure writer -----------------------------------------------------------------------------------


def test_writer_lists_parts_for_the_last_segments_only_and_skips_on_request() -> None:
    entries = [PlaylistEntry(100 + i, 2.0, 1_700_000_000.0 + 2 * i, f"s{100 + i}.ts") for i in range(10)]
    parts = {e.sequence: [PartEntry(0.32, f"p{e.sequence}.{j}.ts", j == 0) for j in range(6)]
             + [PartEntry(0.08, f"p{e.sequence}.6.ts")] for e in entries}
    edge = LiveEdge(110, 1_700_000_020.0, [PartEntry(0.32, "p110.0.ts", True)], "p110.1.ts")
    text = ll_media_playlist(entries, parts, target=2, part_target=0.33, edge=edge).decode()
    segments = check_ll_rules(text)
    assert [s["sequence"] for s in segments if s["parts"]] == [108, 109, 110]
    assert text.rstrip().endswith('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p110.1.ts"')
    assert "#EXT-X-SKIP" not in text

    delta = ll_media_playlist(entries, parts, target=2, part_target=0.33, edge=edge, skip=True).decode()
    # CAN-SKIP-UNTIL is 12 s: the segments that end more than 12 s before the end (20.32 s) go
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=4" in delta
    assert "s103.ts" not in delta and "s104.ts" in delta
    assert "#EXT-X-MEDIA-SEQUENCE:100" in delta  # the skipped segments keep their numbers

    ended = ll_media_playlist(entries, parts, target=2, part_target=0.33, edge=None, ended=True).decode()
    assert "PRELOAD-HINT" not in ended and ended.rstrip().endswith("#EXT-X-ENDLIST")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"hls.part_duration": 0.05}, "from 0.1 s to 2 s"),
    ({"hls.part_duration": 2.0, "hls.segment_duration": 2}, "below hls.segment_duration"),
    ({"hls.low_latency": "sometimes"}, "hls.low_latency"),
])
def test_ll_config_is_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        proxy_config("http://127.0.0.1:1", **overrides)
    config = proxy_config("http://127.0.0.1:1")
    assert config.hls.low_latency is True and config.hls.part_duration == PART_TARGET


async def test_one_progress_event_wakes_every_waiter_and_closing_releases_them() -> None:
    progress = Progress()
    state = {"done": False}
    waiters = [asyncio.create_task(progress.until(lambda: state["done"], time.monotonic() + 60)) for _ in range(100)]
    await asyncio.sleep(0)  # let them all block
    assert progress.waiting == 100
    state["done"] = True
    progress.wake()
    assert await asyncio.gather(*waiters) == [True] * 100
    assert progress.waiting == 0
    # a session that closes releases whoever still waits (nothing would complete any more)
    stuck = asyncio.create_task(progress.until(lambda: False, time.monotonic() + 60))
    await asyncio.sleep(0)
    progress.close()
    assert await stuck is False


# -- the served playlist ---------------------------------------------------------------------------------


async def ll_proxy(emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory,
                   **overrides: Any) -> tuple[TestClient[Any, Any], Muxer]:
    emu = await emulator_factory(**SMOOTH)
    proxy = await proxy_factory(emu, **{**REMUX, **overrides})
    assert (await proxy.get(f"/live/{H264}.m3u8")).status == 200
    return proxy, await muxer_of(proxy, H264, segments=2)


async def test_served_playlists_follow_the_ll_rules_and_parts_tile_the_segment(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    proxy, muxer = await ll_proxy(emulator_factory, proxy_factory)
    texts: list[str] = []
    msn, part = muxer.last_complete + 1, 0
    async with asyncio.timeout(30):
        while len(texts) < 12:  # one blocking reload per part: every state of the live edge is seen
            resp = await proxy.get(f"/live/{H264}.m3u8?_HLS_msn={msn}&_HLS_part={part}")
            assert resp.status == 200, await resp.text()
            texts.append(await resp.text())
            _, segments, _ = segments_of(texts[-1])
            last = segments[-1]
            msn, part = (last["sequence"] + 1, 0) if last["duration"] is not None else (
                last["sequence"], len(last["parts"]))
    for text in texts:
        check_ll_rules(text)
    plain = await proxy.get(f"/live/{H264}.m3u8")
    assert plain.headers["Cache-Control"] == "no-cache"
    segments = check_ll_rules(await plain.text())
    complete = [s for s in segments if s["parts"] and s["duration"] is not None][-1]
    whole = await (await proxy.get(complete["uri"])).read()
    pieces = []
    for p in complete["parts"]:
        resp = await proxy.get(p["URI"])
        assert resp.status == 200
        assert "immutable" in resp.headers["Cache-Control"] and "public" in resp.headers["Cache-Control"]
        pieces.append(await resp.read())
    assert b"".join(pieces) == whole, "the parts of a segment are its bytes, in order"
    assert all(len(piece) % 188 == 0 and piece[0] == 0x47 for piece in pieces)


async def test_low_latency_false_serves_the_plain_playlist(emulator_factory: EmulatorFactory,
                                                         proxy_factory: ProxyFactory) -> None:
    proxy, _ = await ll_proxy(emulator_factory, proxy_factory, **{"hls.low_latency": False})
    text = await (await proxy.get(f"/live/{H264}.m3u8")).text()
    assert "#EXT-X-VERSION:3" in text
    assert not any(tag in text for tag in ("EXT-X-PART", "PRELOAD-HINT", "SERVER-CONTROL"))


@needs_ffmpeg
async def test_ffprobe_and_ffmpeg_play_the_ll_playlist(emulator_factory: EmulatorFactory,
                                                       proxy_factory: ProxyFactory) -> None:
    proxy, _ = await ll_proxy(emulator_factory, proxy_factory)
    url = str(proxy.make_url(f"/live/{H264}.m3u8"))
    probe = await run("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", url,
                      timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert "h264" in probe.stdout and "aac" in probe.stdout
    decoded = await ffmpeg_decode(url, seconds=4, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stderr.strip() == "", decoded.stderr


# -- blocking reloads and hinted parts ---------------------------------------------------------------


def complete(segment: Segment) -> bool:
    return segment.complete


async def test_a_blocking_reload_for_the_next_segment_waits_until_it_is_complete(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    proxy, muxer = await ll_proxy(emulator_factory, proxy_factory)
    msn = muxer.last_complete + 1
    growing = muxer.segment(muxer.session, msn)
    assert growing is not None and not complete(growing)  # asked for before the muxer completed it
    completed_at: list[float] = []

    async def watch() -> None:
        await muxer.progress.until(lambda: muxer.last_complete >= msn, time.monotonic() + 30)
        completed_at.append(time.monotonic())

    watcher = asyncio.create_task(watch())
    resp = await proxy.get(f"/live/{H264}.m3u8?_HLS_msn={msn}")
    answered_at = time.monotonic()
    await watcher
    assert resp.status == 200
    assert complete(growing)
    assert answered_at >= completed_at[0]
    _, segments, _ = segments_of(await resp.text())
    listed = {s["sequence"]: s for s in segments}
    assert listed[msn]["duration"] is not None and listed[msn]["uri"].endswith(f"-{msn}.ts")
    assert "max-age" in resp.headers["Cache-Control"]  # a blocking answer is cacheable under its URL

    # a part of the growing segment: the answer lists it
    current = muxer.last_complete + 1
    index = muxer.parts.completed(current)
    resp = await proxy.get(f"/live/{H264}.m3u8?_HLS_msn={current}&_HLS_part={index}")
    _, segments, _ = segments_of(await resp.text())
    listed = {s["sequence"]: s for s in segments}
    assert len(listed[current]["parts"]) > index


async def test_ll_query_parameters_survive_the_api_key_and_both_playlist_routes(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    """Players append _HLS_msn/_HLS_part/_HLS_skip to the URL they were given, which may carry the key."""
    emu = await emulator_factory(**SMOOTH)
    proxy = await proxy_factory(emu, **{**REMUX, "auth.api_keys": [API_KEY]})
    assert (await proxy.get(f"/live/{H264}.m3u8")).status == 401
    assert (await proxy.get(f"/live/{H264}.m3u8?api_key={API_KEY}")).status == 200
    muxer = await muxer_of(proxy, H264, segments=2)
    for path in (f"/live/{H264}.m3u8?api_key={API_KEY}&mode=remux", f"/live.m3u8?channel={H264}&api_key={API_KEY}"):
        msn = muxer.last_complete + 1
        index = muxer.parts.completed(msn)
        resp = await proxy.get(f"{path}&_HLS_msn={msn}&_HLS_part={index}&_HLS_skip=YES")
        assert resp.status == 200, await resp.text()
        assert "Authorization" in resp.headers["Vary"]
        _, segments, _ = segments_of(await resp.text())
        listed = {s["sequence"]: s for s in segments}
        assert msn in listed and len(listed[msn]["parts"]) > index
        # the part URLs need no key: the signed token is their credential
        part = listed[msn]["parts"][index]["URI"]
        assert (await proxy.get(part)).status == 200
    assert (await proxy.get(f"/live/{H264}.m3u8?_HLS_msn=1")).status == 401  # the key still counts


async def test_far_future_requests_get_a_bounded_answer(emulator_factory: EmulatorFactory,
                                                       proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(**SMOOTH)
    proxy = await proxy_factory(emu, **REMUX)
    assert (await proxy.get(f"/live/{H264}.m3u8")).status == 200
    muxer = await muxer_of(proxy, H264, segments=2)
    last = muxer.last_complete
    far = await proxy.get(f"/live/{H264}.m3u8?_HLS_msn={last + 3}")
    assert far.status == 400 and "two segments" in await far.text()
    assert (await proxy.get(f"/live/{H264}.m3u8?_HLS_part=1")).status == 400
    assert (await proxy.get(f"/live/{H264}.m3u8?_HLS_msn=x")).status == 400
    # the stream stalls from here: nothing completes, so whatever waits, waits for its deadline
    emu.state.faults.stall_live(60)
    # a part URL far ahead (signed like a real one, but not the hinted part), and one long gone: 404
    # at once. "At once" is bounded at half the blocking bound (generous for a loaded machine): a
    # handler that held it would answer only after three target durations.
    for uri in (muxer.part_uri(last + 5, 2), muxer.part_uri(last - 50, 0)):
        began = time.monotonic()
        resp = await proxy.get(uri)
        assert resp.status == 404 and "reload the playlist" in await resp.text()
        assert time.monotonic() - began < 1.5 * muxer.target
    assert muxer.progress.waiting == 0
    # a blocked reload ends after about three target durations with a 503
    msn = muxer.last_complete + 2
    began = time.monotonic()
    resp = await proxy.get(f"/live/{H264}.m3u8?_HLS_msn={msn}")
    waited = time.monotonic() - began
    assert resp.status == 503 and resp.headers["Cache-Control"] == "no-store"
    # bounded by 3 target durations plus the wake tick (generous: a loaded CI machine)
    assert 3 * muxer.target - 0.5 <= waited <= 3 * muxer.target + 3


async def test_500_blocked_requests_are_released_by_one_wake(emulator_factory: EmulatorFactory,
                                                            proxy_factory: ProxyFactory) -> None:
    # 4 s segments: the blocking bound (three target durations, 12 s) leaves a loaded machine ample
    # time to open 500 connections, and the stream is stalled until all 500 are blocked, so the part
    # arrives with every one of them waiting (CI once saw only 371 blocked when it came unstalled)
    emu = await emulator_factory(**SMOOTH)
    proxy = await proxy_factory(emu, **{**REMUX, "hls.segment_duration": 4, "ts.upstream_idle_timeout": 60})
    assert (await proxy.get(f"/live/{H264}.m3u8")).status == 200
    muxer = await muxer_of(proxy, H264, segments=1)
    emu.state.faults.stall_live(60)
    msn = muxer.last_complete + 1
    index = muxer.parts.completed(msn) + 1  # the part after the hinted one: the stall holds it back
    arrival: list[float] = []

    async def watch() -> None:
        # notes when the part arrived (the release is measured from there)
        await muxer.progress.until(lambda: muxer.reached(msn, index), time.monotonic() + 60)
        arrival.append(time.monotonic())

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    url = proxy.make_url(f"/live/{H264}.m3u8?_HLS_msn={msn}&_HLS_part={index}")
    done: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with session.get(url) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.text()
                done.append(time.monotonic())
                assert f"-{msn}.{index}.ts" in body

        requests = asyncio.gather(*(one() for _ in range(500)))
        async with asyncio.timeout(60):
            # the waiter count has no event of its own: look at it every 20 ms until all 500 block
            while muxer.progress.waiting < 501 and not requests.done():
                await asyncio.sleep(0.02)
            blocked = muxer.progress.waiting - 1  # the watcher waits too
            assert not arrival, "the part arrived during the stall"
            emu.state.faults.stall_live_until = 0.0  # the stream flows again: the part completes
            await requests
    await watcher
    part_at = arrival[0]
    # all 500 were waiting on the channel's one event before the part existed, and every one of them
    # was answered with the part (asserted in one())
    assert blocked == 500, f"only {blocked} of 500 requests were blocked before the part arrived"
    release = max(done) - part_at
    print(f"500 blocked reloads released {release * 1000:.0f} ms after the part completed "
          f"(median {statistics.median(done) - part_at:.3f} s)")
    # one wake for all: the bound is for a loaded shared machine writing 500 responses from one loop,
    # not a speed goal (benchmarks/ measures 1,000: released within about 0.2 s)
    assert release <= 2.0, release


# -- hls.js in Chromium -----------------------------------------------------------------------------------

PAGE = """<!doctype html><html><body><video id="video" muted autoplay playsinline></video>
<script src="/ui/vendor/hls.min.js"></script>
<script>
window.fatal = []; window.latencies = [];
const hls = new Hls({lowLatencyMode: true});
hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) window.fatal.push(data.type + ':' + data.details); });
hls.loadSource(%s); hls.attachMedia(document.getElementById('video'));
window.hls = hls;
setInterval(() => { if (hls.playingDate) window.latencies.push(Date.now() - hls.playingDate.getTime()); }, 500);
</script></body></html>"""


async def test_hlsjs_plays_ll_hls_with_low_latency_mode(emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory,
                                                        page: Page, page_watch: PageWatch) -> None:
    proxy, _ = await ll_proxy(emulator_factory, proxy_factory)
    origin = str(proxy.make_url("/"))
    html = PAGE % repr(f"/live/{H264}.m3u8")
    await page.route(origin + "ll.html", lambda route: route.fulfill(body=html, content_type="text/html"))
    await page.goto(origin + "ll.html")
    await page.wait_for_function("document.getElementById('video').currentTime > 1", timeout=45_000)
    start = await page.evaluate("document.getElementById('video').currentTime")
    await page.evaluate("window.latencies = []")
    await asyncio.sleep(20)  # the acceptance is 20 s of playback: wall time is the point here
    state = await page.evaluate("""() => ({fatal: window.fatal, latencies: window.latencies,
        time: document.getElementById('video').currentTime,
        parts: (hls.latestLevelDetails || hls.levels[0].details).partList.length,
        live: (hls.latestLevelDetails || hls.levels[0].details).live})""")
    assert state["fatal"] == []
    assert state["time"] - start > 15, state["time"]
    assert state["parts"] > 0 and state["live"], "hls.js read the parts"
    median = statistics.median(state["latencies"]) / 1000
    print(f"hls.js LL-HLS: median wall clock - playingDate {median:.3f} s over {len(state['latencies'])} samples")


def test_cached_segment_lines_give_the_same_bytes_as_a_fresh_render() -> None:
    """The muxer reuses rendered segment lines between rebuilds (a timeshift window of thousands of
    segments is rewritten at every part): the bytes must be those of a fresh render, plain and LL,
    full and delta, with discontinuities and tags."""
    base = 1_760_000_000.0
    entries = [PlaylistEntry(100 + i, 2.0 + (i % 3) * 0.01, base + 2 * i, f"/remux/remux.1/tok/abcdef12-{100 + i}.ts",
                             discontinuity=i % 97 == 5) for i in range(400)]
    parts = {499: [PartEntry(0.33, "/remux/remux.1/tok/abcdef12-499.0.ts", True)] * 6}
    edge = LiveEdge(500, base + 800, [PartEntry(0.33, "/remux/remux.1/tok/abcdef12-500.0.ts", True)],
                    "/remux/remux.1/tok/abcdef12-500.1.ts", discontinuity=False)
    tags = ["#EXT-X-START:TIME-OFFSET=-30.000,PRECISE=YES"]
    blocks: dict[PlaylistEntry, str] = {}
    for skip in (False, True):
        fresh = ll_media_playlist(entries, parts, target=2, part_target=0.33, edge=edge, skip=skip, tags=tags)
        for _ in range(2):  # the first call fills the cache, the second reads it
            assert ll_media_playlist(entries, parts, target=2, part_target=0.33, edge=edge, skip=skip, tags=tags,
                                     blocks=blocks) == fresh
    assert blocks, "nothing was cached"
    assert media_playlist(entries, target=2, tags=tags, blocks=blocks) == media_playlist(entries, target=2, tags=tags)
    # a cached entry is keyed by all its fields: a changed URI renders anew
    moved = [PlaylistEntry(e.sequence, e.duration, e.program_date_time, e.uri + "?x", e.discontinuity) for e in entries]
    assert media_playlist(moved, target=2, blocks=blocks) == media_playlist(moved, target=2)
