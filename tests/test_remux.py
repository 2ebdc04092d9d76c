"""HLS packaged by the proxy (``hls.mode: remux|auto``) against the emulator, with real ffmpeg/ffprobe."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import m3u8  # test oracle: parses what the proxy served
import pytest
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS
from proxy.keys import METRICS_KEY, REMUX_KEY, SIGNER_KEY, TS_KEY
from proxy.packager.manager import RemuxManager
from proxy.packager.muxer import Muxer
from proxy.packager.urls import segment_uri
from tests.conftest import EmulatorFactory, ProxyFactory, app_of
from tests.players import ffmpeg_decode, needs_ffmpeg, run

H264 = 7181  # testcard: H.264 + AAC, no B-frames
BFRAMES = 7183  # mandelbrot: H.264 with B-frames + AAC
MPEG2 = 7186  # atsc: MPEG-2 video + AC-3 audio
REMUX = {"hls.mode": "remux"}


def remux(client: TestClient[Any, Any]) -> RemuxManager:
    return app_of(client)[REMUX_KEY]


async def muxer_of(client: TestClient[Any, Any], channel: int, *, segments: int = 1, timeout: float = 30) -> Muxer:
    """The channel's muxer once it has completed ``segments`` segments."""
    async with asyncio.timeout(timeout):
        await app_of(client)[TS_KEY].wait_for(lambda: remux(client).find(channel) is not None)
        muxer = remux(client).find(channel)
        assert muxer is not None
        await muxer.wait_for_segments(segments)
        return muxer


async def playlist(client: TestClient[Any, Any], path: str) -> m3u8.M3U8:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    parsed = m3u8.loads(await resp.text())
    # LL-HLS (on by default): m3u8 counts the parts after the last EXTINF as a segment without a URI;
    # these tests are about the complete segments (tests/test_ll_hls.py checks the parts)
    parsed.segments = m3u8.SegmentList(seg for seg in parsed.segments if seg.uri)
    return parsed


def pid(data: bytes, offset: int = 0) -> int:
    return ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]


async def first_video_frame(data: bytes) -> dict[str, Any]:
    result = await run("ffprobe", "-v", "error", "-select_streams", "v", "-show_frames", "-read_intervals", "%+#1",
                       "-show_entries", "frame=key_frame,pict_type", "-of", "json", "-", timeout=30, stdin=data)
    assert result.returncode == 0, result.stderr
    frames: list[dict[str, Any]] = json.loads(result.stdout)["frames"]
    return frames[0]


async def probe_duration(data: bytes, path: Path) -> float:
    """ffprobe's duration of ``data`` (from a file: it seeks to the end to find the last timestamps)."""
    path.write_bytes(data)
    result = await run("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path),
                       timeout=30)
    assert result.returncode == 0, result.stderr
    return float(result.stdout)


# -- acceptance: real players ---------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_three_hls_and_two_ts_viewers_share_one_tuner_and_decode_cleanly(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX)
    hls = str(proxy.make_url(f"/live/{BFRAMES}.m3u8"))
    ts = str(proxy.make_url(f"/live/{BFRAMES}.ts"))
    players = [ffmpeg_decode(hls, seconds=20, timeout=90) for _ in range(3)]
    players += [ffmpeg_decode(ts, seconds=20, timeout=90) for _ in range(2)]
    results = await asyncio.gather(*players)
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    counters = emu.state.counters
    assert counters.live_opened == 1
    assert counters.transcodes_started == 0
    assert counters.tuner_refusals == 0
    stream = app_of(proxy)[TS_KEY].get(BFRAMES)
    assert stream is not None and stream.connections == 1
    metrics = app_of(proxy)[METRICS_KEY]
    assert metrics.tuners_in_use._value.get() == 1
    assert metrics.remux_segments._value.get() >= 8


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_ffmpeg_sees_one_stream_across_an_upstream_break_and_a_nextpvr_restart(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX)
    player = asyncio.create_task(ffmpeg_decode(str(proxy.make_url(f"/live/{BFRAMES}.m3u8")), seconds=20,
                                               timeout=120))
    muxer = await muxer_of(proxy, BFRAMES, segments=3)
    emu.state.abort_streams()  # the connection breaks (TCP reset), NextPVR itself carries on
    await muxer.wait_for_segments(6)
    emu.state.restart()  # sessions, tuners and streams gone
    await muxer.wait_for_segments(8)
    result = await player
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    stream = app_of(proxy)[TS_KEY].get(BFRAMES)
    assert stream is not None and stream.connections == 3
    assert emu.state.counters.restarts == 1
    assert remux(proxy).find(BFRAMES) is muxer  # one session throughout: no discontinuity
    listed = await playlist(proxy, f"/live/{BFRAMES}.m3u8")
    assert not any(seg.discontinuity for seg in listed.segments)


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_segments_start_with_pat_and_a_keyframe_and_extinf_is_the_real_duration(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX)
    await playlist(proxy, f"/live/{BFRAMES}.m3u8")
    await muxer_of(proxy, BFRAMES, segments=5)
    listed = await playlist(proxy, f"/live/{BFRAMES}.m3u8")
    assert listed.target_duration == 2
    assert len(listed.segments) == 5
    bodies = []
    for seg in listed.segments:
        resp = await proxy.get(seg.uri)
        assert resp.status == 200
        body = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(body)
        assert len(body) % 188 == 0 and body[0] == 0x47 and pid(body) == 0  # PAT first
        frame = await first_video_frame(body)
        assert (frame["key_frame"], frame["pict_type"]) == (1, "I")
        assert seg.program_date_time is not None
        bodies.append(body)
    extinf = sum(seg.duration for seg in listed.segments)
    measured = await probe_duration(b"".join(bodies), tmp_path / "segments.ts")
    assert abs(extinf - measured) <= 0.01 * measured, (extinf, measured)
    # every later segment is one target long: cut at the first keyframe at or after 2 s
    assert [seg.duration for seg in listed.segments[1:]] == [2.0] * 4
    # the same URL for every viewer, and a URL for another channel opens nothing
    again = await playlist(proxy, f"/live/{BFRAMES}.m3u8")
    assert again.segments[0].uri == listed.segments[0].uri
    forged = listed.segments[0].uri.replace(f"remux.{BFRAMES}", f"remux.{H264}")
    assert (await proxy.get(forged)).status == 403


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_auto_remuxes_h264_and_transcodes_mpeg2_and_remembers(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **{"hls.mode": "auto"})
    h264 = await playlist(proxy, f"/live/{H264}.m3u8")
    assert h264.segments and all(seg.uri.startswith("/remux/") for seg in h264.segments)
    assert emu.state.counters.transcodes_started == 0
    mpeg2 = await playlist(proxy, f"/live/{MPEG2}.m3u8")
    assert mpeg2.segments and all(seg.uri.startswith("/hls/") for seg in mpeg2.segments)
    assert emu.state.counters.transcodes_started == 1
    assert remux(proxy).decision(MPEG2) == "transcode"
    assert remux(proxy).decision(H264) == "remux"
    opened = emu.state.counters.live_opened
    await playlist(proxy, f"/live/{MPEG2}.m3u8")
    assert emu.state.counters.live_opened == opened  # decided at once: no second look at the PMT
    # ?profile= still means the transcoder, ?mode=remux packages even MPEG-2 for native players
    await playlist(proxy, f"/live/{H264}.m3u8?profile=360p")
    assert emu.state.counters.transcodes_started == 2
    result = await ffmpeg_decode(str(proxy.make_url(f"/live/{MPEG2}.m3u8?mode=remux")), seconds=4, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


async def test_viewers_leave_the_tuner_is_released_after_the_linger(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX, **{"hls.segment_duration": 1, "ts.linger": 0.5})
    await playlist(proxy, f"/live/{H264}.m3u8")
    assert emu.state.tuners_in_use == 1
    # no further playlist request: idle after 3 target durations, then the linger
    await emu.state.wait_for(lambda: emu.state.tuners_in_use == 0, seconds=20)
    assert remux(proxy).find(H264) is None
    assert app_of(proxy)[TS_KEY].get(H264) is None
    # the next session continues the media sequence behind a discontinuity
    listed = await playlist(proxy, f"/live/{H264}.m3u8")
    assert listed.media_sequence >= 1
    assert listed.segments[0].discontinuity


async def test_nextpvr_ending_the_stream_ends_the_playlist(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX)
    await playlist(proxy, f"/live/{H264}.m3u8")
    muxer = await muxer_of(proxy, H264, segments=2)
    emu.state.end_live_streams()
    async with asyncio.timeout(10):
        while not muxer.ended:
            await muxer.wait_for_segments(muxer.next_sequence + 1)
    listed = await playlist(proxy, f"/live/{H264}.m3u8")
    assert listed.is_endlist
    for seg in listed.segments:
        assert (await proxy.get(seg.uri)).status == 200


async def test_no_tuner_free_is_503_with_retry_after(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory(tuners=1)
    proxy = await proxy_factory(emu, **REMUX)
    await playlist(proxy, f"/live/{H264}.m3u8")
    resp = await proxy.get(f"/live/{BFRAMES}.m3u8")
    assert resp.status == 503
    assert resp.headers["Retry-After"]


async def test_bad_mode_is_400_and_evicted_segments_are_404(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX, **{"hls.window_segments": 2, "hls.segment_duration": 1})
    assert (await proxy.get(f"/live/{H264}.m3u8?mode=fast")).status == 400
    assert (await proxy.get(f"/live/{H264}.m3u8?mode=remux&profile=360p")).status == 400
    first = (await playlist(proxy, f"/live/{H264}.m3u8")).segments[0].uri
    await muxer_of(proxy, H264, segments=7)  # kept: 2 listed + 3 more (RFC 8216bis 6.2.2), then gone
    assert (await proxy.get(first)).status == 404
    assert (await proxy.get("/remux/remux.7181/AAAA/00000000-1.ts")).status == 403
    assert (await proxy.get("/remux/other.7181/AAAA/00000000-1.ts")).status == 404


def is_complete(segment: Any) -> bool:
    """Read again after awaits (mypy would keep the value narrowed by an earlier assert)."""
    return bool(segment.complete)


async def test_a_segment_is_served_while_it_grows(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX)
    await playlist(proxy, f"/live/{H264}.m3u8")
    muxer = await muxer_of(proxy, H264, segments=1)
    growing = muxer.segment(muxer.session, muxer.next_sequence - 1)
    assert growing is not None and not growing.complete
    # the URL the playlist will list for it once it is complete
    uri = segment_uri(app_of(proxy)[SIGNER_KEY], H264, growing.name, created=growing.wall_clock,
                      ttl=6 * 3600)
    resp = await proxy.get(uri)
    assert resp.status == 200 and "Content-Length" not in resp.headers
    first = await resp.content.readany()
    assert first and not is_complete(growing)  # bytes arrive before the segment is finished
    body = first + await resp.read()
    assert is_complete(growing) and body == growing.data()


def test_emulator_channels_cover_the_codecs(emulator: Emulator) -> None:
    names = {c.oid: emulator.state.feeds.source_name(c) for c in CHANNELS}
    assert (names[H264], names[BFRAMES], names[MPEG2]) == ("testcard", "mandelbrot", "atsc")


async def test_a_stream_without_pmt_is_502_in_remux_and_the_transcoder_in_auto(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    emu.state.faults.stall_live(30)  # the tuner sends nothing: no PAT/PMT ever arrives
    proxy = await proxy_factory(emu, **REMUX, **{"hls.remux_start_timeout": 0.5})
    resp = await proxy.get(f"/live/{H264}.m3u8")
    assert resp.status == 502
    assert "no PAT/PMT arrived within" in await resp.text()
    assert remux(proxy).find(H264) is None  # nobody watches a failed session
    auto = await playlist(proxy, f"/live/{BFRAMES}.m3u8?mode=auto")
    assert auto.segments and all(seg.uri.startswith("/hls/") for seg in auto.segments)
    assert remux(proxy).decision(BFRAMES) is None  # no verdict on the codecs: asked again next time


async def test_the_connection_lives_while_anyone_watches_either_way_and_lingers_after_the_last(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await emulator_factory()
    proxy = await proxy_factory(emu, **REMUX, **{"hls.segment_duration": 1, "ts.linger": 0.5})
    ts = app_of(proxy)[TS_KEY]
    await playlist(proxy, f"/live/{H264}.m3u8")
    viewer = await proxy.get(f"/live/{H264}.ts")
    assert viewer.status == 200
    assert await viewer.content.readexactly(188 * 100)
    # the HLS viewer goes quiet: the packager lets go, the TS viewer keeps the one connection
    async with asyncio.timeout(20):
        await ts.wait_for(lambda: remux(proxy).find(H264) is None)
    stream = ts.get(H264)
    assert stream is not None and not stream.closed and stream.taps == []
    assert await viewer.content.readexactly(188 * 100)
    # an HLS viewer comes back: the same connection, a new packaging session on it
    await playlist(proxy, f"/live/{H264}.m3u8")
    assert ts.get(H264) is stream and stream.connections == 1
    viewer.close()
    async with asyncio.timeout(20):
        await ts.wait_for(lambda: not stream.viewers)
    assert not stream.closed  # the packager still watches
    await emu.state.wait_for(lambda: emu.state.tuners_in_use == 0, seconds=20)  # idle, then the linger
    assert emu.state.counters.live_opened == 1
