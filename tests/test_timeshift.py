"""Timeshift (``hls.timeshift``): the remux playlist lists the whole window, older segments come from
files on disk, programme boundaries are marked (EXT-X-DATERANGE) and ``?start=programme`` starts
at the current programme. Against the emulator (real time) with real ffmpeg/ffprobe, and the disk
store on its own with real files."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import m3u8  # test oracle: parses what the proxy served
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Page

from proxy.config import ConfigError
from proxy.emulator.data import CHANNELS
from proxy.keys import TS_KEY
from proxy.packager.muxer import Muxer
from proxy.packager.programmes import DATERANGE_CLASS, Programme, daterange_tags, programme_start
from proxy.packager.segment import Segment
from proxy.packager.timeshift import TimeshiftStore
from tests.browser import browser_fixture, page_fixture, page_watch_fixture  # noqa: F401
from tests.conftest import EmulatorFactory, ProxyFactory, app_config, app_of, proxy_config
from tests.players import needs_ffmpeg, run
from tests.test_remux import BFRAMES, H264, muxer_of, remux

TIMESHIFT = {"hls.mode": "remux"}


def complete_segments(text: str) -> m3u8.M3U8:
    """The playlist with its complete segments only: with LL-HLS (on by default) m3u8 counts the
    parts after the last EXTINF as a segment without a URI (tests/test_ll_hls.py checks parts)."""
    parsed = m3u8.loads(text)
    parsed.segments = m3u8.SegmentList(seg for seg in parsed.segments if seg.uri)
    return parsed


def timeshift_config(tmp_path: Path, window: str) -> dict[str, Any]:
    return {**TIMESHIFT, "hls.timeshift": window, "hls.timeshift_dir": str(tmp_path)}


async def watch(proxy: TestClient[Any, Any], muxer: Muxer, path: str, segments: int) -> m3u8.M3U8:
    """Ask for the playlist at every new segment (as a player would: the session stays watched)
    until ``segments`` segments are complete; the last playlist."""
    done = muxer.wait_for_segments(1)
    await done
    count = 1
    while True:
        resp = await proxy.get(path)
        assert resp.status == 200, await resp.text()
        text = await resp.text()
        if count >= segments:
            return complete_segments(text)
        count += 1
        await muxer.wait_for_segments(count)


def dateranges(playlist: m3u8.M3U8) -> list[Any]:
    return [d for s in playlist.segments for d in s.dateranges]


async def first_pts(url: str, *extra: str) -> float:
    """The first video frame's PTS (seconds) as ffprobe's HLS demuxer reads ``url``."""
    result = await run("ffprobe", "-v", "error", *extra, "-select_streams", "v", "-show_frames",
                       "-read_intervals", "%+#1", "-show_entries", "frame=pts_time", "-of", "json", url, timeout=60)
    assert result.returncode == 0, result.stderr
    return float(json.loads(result.stdout)["frames"][0]["pts_time"])


# -- acceptance: the whole minute, decoded from its start ----------------------------------------------


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_after_a_minute_the_playlist_lists_the_whole_minute_and_ffmpeg_decodes_from_its_start(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    """The one real-time minute of this file (the emulator's unpaced mode floods the disk at tens of
    MB/s, which is not a channel): 31 segments of 2 s, while the memory window is 6."""
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **timeshift_config(tmp_path, "10m"))
    path = f"/live/{H264}.m3u8"
    assert (await proxy.get(path)).status == 200
    muxer = await muxer_of(proxy, H264)
    async with asyncio.timeout(120):  # 62 s of stream in real time, with room for a loaded machine
        listed = await watch(proxy, muxer, path, 31)
    assert len(listed.segments) >= 31 > app_config(proxy).hls.window_segments
    assert sum(s.duration for s in listed.segments) >= 60.0
    # the session's very first segment is still listed, and served from its file
    assert listed.media_sequence == muxer.first_sequence
    first = await proxy.get(listed.segments[0].uri)
    assert first.status == 200 and first.headers["Content-Type"] == "video/mp2t"
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    data = await first.read()
    timeshift = muxer.timeshift
    assert timeshift is not None
    assert data == timeshift.path(timeshift.records[0]).read_bytes()
    assert muxer.segment(muxer.session, listed.media_sequence) is None  # not from memory
    segment_file = tmp_path / "first.ts"
    segment_file.write_bytes(data)
    expected = await first_pts(str(segment_file))
    url = str(proxy.make_url(path))
    assert await first_pts(url, "-live_start_index", "0") == pytest.approx(expected, abs=0.05)
    # without it ffprobe starts near the live edge: the option is what reached back a minute
    assert await first_pts(url) > expected + 40
    decoded = await run("ffmpeg", "-nostdin", "-v", "error", "-live_start_index", "0", "-i", url, "-t", "6",
                        "-f", "null", "-", timeout=60)
    assert decoded.returncode == 0 and not decoded.stderr.strip(), decoded.stderr


# -- sliding by duration, memory vs disk, and the folders ----------------------------------------------


async def test_the_window_slides_by_duration_memory_holds_only_the_live_window_and_the_folder_goes(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **timeshift_config(tmp_path, "16s"), **{"hls.window_segments": 2})
    path = f"/live/{H264}.m3u8"
    assert (await proxy.get(path)).status == 200
    muxer = await muxer_of(proxy, H264)
    sequences: list[int] = []
    async with asyncio.timeout(90):  # 12 segments of 2 s in real time
        count = 1
        while count < 12:
            count += 1
            await muxer.wait_for_segments(count)
            listed = complete_segments(await (await proxy.get(path)).text())
            sequences.append(listed.media_sequence)
    timeshift, manager = muxer.timeshift, remux(proxy)
    assert timeshift is not None and manager.timeshift is not None
    await manager.timeshift.drain()
    # oldest first: the playlist starts later, its media sequence only grows, it spans the window
    assert sequences == sorted(sequences) and sequences[-1] > muxer.first_sequence
    assert 14.0 <= sum(s.duration for s in listed.segments) <= 16.0
    assert len(listed.segments) == len(timeshift.records) > 2
    assert [r.sequence for r in timeshift.records] == [listed.media_sequence + i for i in range(len(listed.segments))]
    # memory holds the live window (listed and as many again + 1), the disk the whole window
    in_memory = manager.store.segments(muxer.session)
    assert len(in_memory) <= 2 * 2 + 1 < len(timeshift.records) + 1
    assert manager.store.shelf_bytes(muxer.session) == sum(s.size for s in in_memory)
    files = sorted(timeshift.folder.iterdir())
    assert [f.name for f in files] == [r.name for r in timeshift.records]
    assert timeshift.bytes == sum(f.stat().st_size for f in files) > manager.store.shelf_bytes(muxer.session)
    # the records hold numbers and names, never the bytes
    assert all(not isinstance(getattr(r, f), bytes | bytearray | memoryview)
               for r in timeshift.records for f in r.__slots__)
    # nobody watches any more: the session stops and its folder goes; the app's folder goes at shutdown
    folder, run_folder = timeshift.folder, manager.timeshift.run_folder
    async with asyncio.timeout(60):
        await app_of(proxy)[TS_KEY].wait_for(lambda: manager.find(H264) is None)
        await manager.timeshift.drain()
    assert not folder.exists() and run_folder.exists()
    await proxy.close()
    assert not run_folder.exists()
    assert list(tmp_path.iterdir()) == []


@needs_ffmpeg
async def test_daterange_marks_the_guides_programme_boundary_and_start_programme_begins_there(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory()
    now = int(time.time())
    boundary = now + 7
    marked = next(c for c in CHANNELS if c.oid == H264)
    _early, late = emu.state.guide.pin(marked, [('Early "Show"', now - 3600, boundary),
                                               ('Late "Night" News\r\nLive', boundary, boundary + 1800)])
    # a second channel whose programme began long before its window
    long_running = next(c for c in CHANNELS if c.oid == BFRAMES)
    emu.state.guide.pin(long_running, [("Marathon", now - 3600, now + 3600)])
    proxy = await proxy_factory(emu, **timeshift_config(tmp_path, "10m"))
    path = f"/live/{H264}.m3u8"
    assert (await proxy.get(path)).status == 200
    assert (await proxy.get(f"/live/{BFRAMES}.m3u8?start=programme")).status == 200
    muxer = await muxer_of(proxy, H264)
    other = await muxer_of(proxy, BFRAMES)
    async with asyncio.timeout(90):  # 9 segments of 2 s in real time: the boundary is inside
        assert muxer.programmes is not None
        await muxer.programmes.wait_fetched()
        plain = await watch(proxy, muxer, path, 9)
    current = muxer.programmes.current()
    assert current is not None and (current.event_id, current.start) == (late.event_id, boundary)
    resp = await proxy.get(path + "?start=programme")
    assert resp.status == 200 and resp.headers["X-Start-Over"] == "programme"
    text = await resp.text()
    started = complete_segments(text)
    # one mark: the boundary inside the window (the early show began before it)
    assert [d.id for d in dateranges(started)] == [f"programme-{H264}-{late.event_id}-{boundary}"]
    mark = dateranges(started)[0]
    assert mark.class_ == DATERANGE_CLASS
    assert mark.start_date == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(boundary))
    assert mark.duration == pytest.approx(1800.0)
    assert dict(mark.x_client_attrs) == {"x_title": "\"Late 'Night' News Live\""}
    assert "\r" not in text and text.count("\n\n") == 0
    assert [d.id for d in dateranges(plain)] == [mark.id] and plain.start is None  # stable, and no start
    # EXT-X-START at the boundary, counted back from the end
    total = sum(s.duration for s in started.segments)
    position = 0.0
    for segment in started.segments:
        pdt = segment.current_program_date_time.timestamp()
        if pdt + segment.duration > boundary:
            position += min(max(boundary - pdt, 0.0), segment.duration)
            break
        position += segment.duration
    assert started.start is not None and started.start.precise == "YES"
    assert started.start.time_offset == pytest.approx(-(total - position), abs=0.01)
    assert 0 < -started.start.time_offset < total
    # the other channel's programme began before its window: it starts at the oldest segment, and says so
    other_resp = await proxy.get(f"/live/{BFRAMES}.m3u8?start=programme")
    assert other_resp.headers["X-Start-Over"].startswith("oldest; the timeshift window does not reach back")
    oldest = complete_segments(await other_resp.text())
    assert other.programmes is not None and other.programmes.current() is not None
    assert oldest.start is not None
    assert oldest.start.time_offset == pytest.approx(-sum(s.duration for s in oldest.segments), abs=0.01)
    assert (await proxy.get(path + "?start=beginning")).status == 400


async def test_start_over_without_timeshift_is_named_and_the_m3u_variant_needs_it(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory()
    plain = await proxy_factory(emu, **TIMESHIFT)
    resp = await plain.get(f"/live/{H264}.m3u8?start=programme")
    assert resp.status == 200 and resp.headers["X-Start-Over"] == "unavailable; hls.timeshift is off"
    assert "EXT-X-START" not in await resp.text()
    assert (await plain.get("/playlist.m3u?format=hls&start=programme")).status == 400
    shifted = await proxy_factory(emu, **timeshift_config(tmp_path, "1h"))
    m3u = await (await shifted.get("/playlist.m3u?format=hls&start=programme")).text()
    streams = [line for line in m3u.splitlines() if line.startswith("http")]
    assert streams and all(line.endswith(".m3u8?start=programme") for line in streams)
    keyed = await (await shifted.get("/playlist.m3u?format=hls&start=programme&api_key=")).text()
    assert keyed == m3u  # an empty key adds nothing
    assert (await shifted.get("/playlist.m3u?format=ts&start=programme")).status == 400
    assert (await (await shifted.get("/ui/settings.json")).json())["timeshift"] is True


# -- the disk store on its own: eviction by duration and bytes, totals, stale folders, a slow disk -----


def segment(sequence: int, size: int = 1000, *, duration: float = 2.0, wall: float | None = None,
            discontinuity: bool = False) -> Segment:
    made = Segment(sequence, f"abcd0001-{sequence}.ts", wall_clock=wall if wall is not None else 1e9 + 2 * sequence,
                   first_timestamp=None, discontinuity=discontinuity)
    made.append(bytes([sequence % 256]) * size)
    made.finish(duration)
    made.uri = f"/remux/x/{sequence}"
    return made


async def test_the_disk_store_evicts_oldest_first_by_duration_then_by_bytes(tmp_path: Path) -> None:
    store = TimeshiftStore(tmp_path, window=10.0, channel_bytes=3500, total_bytes=10_000)
    await store.start()
    try:
        by_time = store.open("abcd0001")
        for n in range(10):
            by_time.add(segment(n, 500, discontinuity=n == 2))
        await store.drain()
        assert [r.sequence for r in by_time.records] == [5, 6, 7, 8, 9]  # 10 s of 2 s segments
        assert by_time.left_discontinuities == 1
        assert sorted(p.name for p in by_time.folder.iterdir()) == sorted(f"abcd0001-{n}.ts" for n in range(5, 10))
        assert by_time.find(4) is None and by_time.find(9) is not None
        assert by_time.path(by_time.records[0]).read_bytes() == bytes([5]) * 500
        assert [r.sequence for r in by_time.listed_before(9)] == [5, 6, 7, 8]
        by_bytes = store.open("abcd0002")
        for n in range(10):
            by_bytes.add(segment(100 + n, 1000, duration=0.5))
        await store.drain()
        assert [r.sequence for r in by_bytes.records] == [107, 108, 109]  # 3500 bytes
        assert store.stored_bytes == by_time.bytes + by_bytes.bytes == 2500 + 3000
        by_time.close()
        await store.drain()
        assert not by_time.folder.exists() and store.stored_bytes == 3000
    finally:
        await store.close()
    assert not store.run_folder.exists()


async def test_all_channels_together_stay_within_the_total_oldest_of_any_channel_first(tmp_path: Path) -> None:
    store = TimeshiftStore(tmp_path, window=3600.0, channel_bytes=10_000, total_bytes=5000)
    await store.start()
    try:
        a, b = store.open("aaaa0001"), store.open("bbbb0001")
        for n in range(4):
            a.add(segment(n, 1000, wall=100.0 + n))
        for n in range(4):
            b.add(segment(n, 1000, wall=200.0 + n))
        await store.drain()
        assert store.stored_bytes == 5000
        # a's segments are older than any of b's: they left first
        assert [r.sequence for r in a.records] == [3] and [r.sequence for r in b.records] == [0, 1, 2, 3]
        assert len(list(a.folder.iterdir())) == 1
    finally:
        await store.close()


async def test_a_disk_behind_the_stream_restarts_the_window_instead_of_buffering(tmp_path: Path) -> None:
    store = TimeshiftStore(tmp_path, window=3600.0, channel_bytes=10**6, total_bytes=10**6, pending_bytes=2500)
    await store.start()
    try:
        channel = store.open("abcd0001")
        for n in range(3):  # no await between: the writer has not run, 3000 bytes would be pending
            channel.add(segment(n, 1000))
        # the third did not fit: it is lost, and the two before it leave (the window has no gaps)
        assert store.pending_bytes <= 2500 and list(channel.records) == []
        await store.drain()
        channel.add(segment(3, 1000))
        await store.drain()
        assert [r.sequence for r in channel.records] == [3] and store.pending_bytes == 0
        assert [p.name for p in channel.folder.iterdir()] == ["abcd0001-3.ts"]
    finally:
        await store.close()


async def test_folders_of_dead_runs_are_removed_at_start_and_live_ones_kept(tmp_path: Path) -> None:
    dead, alive, other = tmp_path / "run-1-dead", tmp_path / "run-2-alive", tmp_path / "not-ours"
    for folder in (dead, alive, other):
        (folder / "session").mkdir(parents=True)
        (folder / "session" / "x-1.ts").write_bytes(b"x")
        (folder / ".lock").write_bytes(b"")
    held = os.open(alive / ".lock", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # another proxy process that is still running
    try:
        store = TimeshiftStore(tmp_path, window=60.0, channel_bytes=10**6, total_bytes=10**6)
        await store.start()
        assert not dead.exists() and alive.exists() and other.exists()
        await store.close()
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-ours", "run-2-alive"]


# -- the pure half ----------------------------------------------------------------------------------------


class _Entry:
    def __init__(self, pdt: float, duration: float) -> None:
        self.program_date_time, self.duration = pdt, duration


def test_programme_start_and_marks_follow_the_segments_media_time() -> None:
    entries = [_Entry(1000.0 + 2 * i, 2.0) for i in range(5)]  # 1000 .. 1010
    inside = Programme(7, 'A "b"\nc', 1003.5, 1100.0)
    point = programme_start(inside, entries)
    assert point.held and point.offset == pytest.approx(10.0 - 3.5)
    recent = programme_start(Programme(9, "y", 1009.0, 1100.0), entries, hold_back=6.0)
    assert recent.held and recent.offset == pytest.approx(6.0)  # not within 3 target durations of the end
    assert programme_start(inside, entries, hold_back=6.0).offset == pytest.approx(6.5)
    assert programme_start(inside, entries[:2], hold_back=6.0).offset == pytest.approx(4.0)  # at most the whole
    before = programme_start(Programme(8, "x", 900.0, 1003.5), entries)
    assert not before.held and before.offset == pytest.approx(10.0)
    assert daterange_tags(3, [Programme(8, "x", 900.0, 1003.5), inside], entries) == [
        '#EXT-X-DATERANGE:ID="programme-3-7-1003",CLASS="org.nextpvr-hls-proxy.programme",'
        'START-DATE="1970-01-01T00:16:43.500Z",DURATION=96.500,X-TITLE="A \'b\' c"']


def test_the_timeshift_keys_are_validated() -> None:
    config = proxy_config("http://127.0.0.1:1", **{"hls.timeshift": "2h", "hls.timeshift_max_bytes": "4GiB"})
    assert (config.hls.timeshift, config.hls.timeshift_max_bytes) == (7200.0, 4 * 2**30)
    assert config.hls.timeshift_total_bytes == 8 * 2**30 and config.hls.timeshift_dir is None
    assert proxy_config("http://127.0.0.1:1").hls.timeshift == 0
    for key, value, expected in [("hls.timeshift", "5s", "from 4 segments"), ("hls.timeshift", "ten", "a duration"),
                                 ("hls.timeshift", "169h", "to 7 days"),
                                 ("hls.timeshift_max_bytes", "1KiB", "at least 1 MiB"),
                                 ("hls.timeshift_max_bytes", "9GiB", "at most hls.timeshift_total_bytes"),
                                 ("hls.timeshift_dir", " ", "a folder path")]:
        with pytest.raises(ConfigError, match=expected) as caught:
            proxy_config("http://127.0.0.1:1", **{key: value})
        assert key in str(caught.value)


# -- the web page: "Start over" in real Chromium with hls.js ----------------------------------------------


async def test_the_players_start_over_button_begins_at_the_programme_start(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory, tmp_path: Path, page: Page
) -> None:
    emu = await emulator_factory()
    channel = CHANNELS[0]
    now = int(time.time())
    emu.state.guide.pin(channel, [("Before", now - 3600, now + 4), ("Now On", now + 4, now + 3600)])
    proxy = await proxy_factory(emu, **timeshift_config(tmp_path, "10m"))
    path = f"/live/{channel.oid}.m3u8"
    assert (await proxy.get(path)).status == 200
    muxer = await muxer_of(proxy, channel.oid)
    async with asyncio.timeout(90):  # 12 segments in real time: the programme began ~20 s before the end
        await watch(proxy, muxer, path, 12)
    await page.goto(str(proxy.make_url("/#channels")))
    await page.wait_for_function("document.body.dataset.loaded === 'channels'", timeout=20_000)
    await page.click(f"button.play[data-channel='{channel.oid}']")
    playing = "(() => { const v = document.getElementById('video'); return !v.paused && v.readyState >= 3; })()"
    behind = "(() => { const v = document.getElementById('video'); return v.seekable.end(0) - v.currentTime; })()"
    await page.wait_for_function(playing, timeout=45_000)
    live_lag = await page.evaluate(behind)
    button = page.locator("#player-startover")
    assert await button.is_visible()
    async with page.expect_request(lambda r: "start=programme" in r.url):
        await button.click()
    await page.wait_for_function(playing, timeout=45_000)
    # hls.js followed EXT-X-START: playback sits at the programme's start, far behind the live edge
    assert await page.evaluate(behind) > live_lag + 8
    assert not await button.is_visible()
