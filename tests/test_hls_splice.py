"""Transcode restarts without a seam for ffmpeg-based clients (``proxy/hls/continuity.py``).

NextPVR forgets its transcodes (sessions expire, a transcode is dropped: 404 on its playlist); the
proxy starts a new one and stitches its playlist on. ffmpeg's HLS reader ignores
``EXT-X-DISCONTINUITY``, so the new transcode's segments must continue the old timestamps and
continuity counters. Real ffmpeg/ffprobe against the emulator; every wait is on an event.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Page

from proxy.emulator import Emulator
from proxy.media.packets import NULL_PID, PACKET_SIZE, packet_pid
from tests.browser import browser_fixture, page_fixture, page_watch_fixture  # noqa: F401
from tests.conftest import EmulatorFactory, ProxyFactory
from tests.players import FFMPEG, FFPROBE, PlayerLog, needs_ffmpeg, play_hls, run

CHANNEL = 7181


def drop_transcode(emu: Emulator) -> None:
    """NextPVR drops the channel's transcode: its playlist and segments now answer 404."""
    sids = [sid for sid, t in emu.state.transcodes.items() if t.channel.oid == CHANNEL]
    assert sids, "no transcode of the channel to drop"
    for sid in sids:
        emu.state.end_transcode(sid, "expired")


async def fire_after_segments(emu: Emulator, faults: list[Callable[[], Any]], done: Callable[[], bool],
                              *, segments: int = 3) -> None:
    """Fire each fault after the player took ``segments`` more segments (paced by what it consumed)."""
    for fire in faults:
        served = emu.state.counters.segment_requests

        def consumed(s: int = served) -> bool:
            return emu.state.counters.segment_requests >= s + segments or done()

        await emu.state.wait_for(consumed, seconds=60)
        if done():
            return
        fire()


#: the audio of a new transcode starts where its encoder put it relative to the video: after the
#: join (video continuous, A/V sync kept) overlapping AAC frames are removed and a hole is filled
#: with silent frames, whole ones that end at or before the new audio: what is left is less than
#: one audio frame (the stream's own: 1024 samples at its rate), allowed on top of the rounding
AUDIO_GAP_FRAMES = 1


def framecrc_frames(text: str) -> dict[int, tuple[str, int, list[tuple[int, int]]]]:
    """stream index -> (media type, time base denominator, [(pts, duration)]) from framecrc output."""
    bases: dict[int, int] = {}
    types: dict[int, str] = {}
    frames: dict[int, list[tuple[int, int]]] = {}
    for line in text.splitlines():
        if line.startswith("#tb "):
            index, base = line[4:].split(":")
            bases[int(index)] = int(base.strip().split("/")[1])
        elif line.startswith("#media_type "):
            index, kind = line[12:].split(":")
            types[int(index)] = kind.strip()
        elif line and not line.startswith("#"):
            index, _dts, pts, duration, *_ = (part.strip() for part in line.split(","))
            frames.setdefault(int(index), []).append((int(pts), int(duration)))
    return {i: (types.get(i, "?"), bases.get(i, 1), f) for i, f in frames.items()}


def gaps(frames: list[tuple[int, int]], allowance: int = 0) -> list[tuple[int, int]]:
    """(pts, step) wherever a frame does not follow the previous one (forwards, within one frame
    duration plus ``allowance``)."""
    found = []
    for (pts_a, dur_a), (pts_b, _) in itertools.pairwise(frames):
        step = pts_b - pts_a
        if not 0 < step <= dur_a + max(1, dur_a // 2) + allowance:
            found.append((pts_a, step))
    return found


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.slow
async def test_ffmpeg_decodes_across_an_expiry_and_a_dropped_transcode_without_a_seam(
        emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(segment_seconds=2)
    # a player that stalls during a restart must not look idle
    proxy = await proxy_factory(emu, **{"hls.idle_timeout": 30})
    url = str(proxy.make_url(f"/live/{CHANNEL}.m3u8"))
    assert FFMPEG is not None
    # framecrc: one line per decoded frame with its timestamps; passthrough keeps them as decoded
    player = asyncio.create_task(run(FFMPEG, "-nostdin", "-hide_banner", "-v", "warning", "-i", url, "-t", "30",
                                     "-fps_mode", "passthrough", "-f", "framecrc", "-", timeout=150))
    initiates = emu.state.counters.transcodes_started
    await fire_after_segments(emu, [emu.state.expire_sessions, lambda: drop_transcode(emu)], player.done)
    result = await player
    assert result.returncode == 0, result.stderr
    # both faults made the proxy start a new transcode, and ffmpeg saw nothing of either
    assert emu.state.counters.transcodes_started >= initiates + 3
    assert result.stderr == ""
    streams = framecrc_frames(result.stdout)
    assert sorted(kind for kind, _, _ in streams.values()) == ["audio", "video"], result.stdout[:500]
    for index, (kind, rate, frames) in streams.items():
        assert len(frames) > 100, (index, len(frames))
        # a decoded AAC frame's duration, in the stream's time base, is its 1024 samples
        allowance = AUDIO_GAP_FRAMES * frames[0][1] if kind == "audio" else 0
        assert gaps(frames, allowance) == [], (kind, rate, gaps(frames, allowance))


def ts_packets(data: bytes) -> list[tuple[int, int, bool]]:
    """(PID, continuity counter, has payload) of every packet but null packets."""
    out = []
    for off in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE):
        pid = packet_pid(data, off)
        if pid != NULL_PID:
            out.append((pid, data[off + 3] & 0x0F, bool(data[off + 3] & 0x10)))
    return out


def continuity_breaks(data: bytes) -> list[tuple[int, int, int]]:
    """(PID, expected, found) wherever a payload packet's counter does not follow its PID's last."""
    last: dict[int, int] = {}
    breaks = []
    for pid, cc, payload in ts_packets(data):
        if pid in last and payload and cc != (last[pid] + 1) & 0x0F:
            breaks.append((pid, (last[pid] + 1) & 0x0F, cc))
        last[pid] = cc
    return breaks


async def play_across(proxy: TestClient[Any, Any], emu: Emulator, faults: list[Callable[[], Any]]) -> PlayerLog:
    """A playlist-reloading player through ``faults``; returns the segments it got, in order."""
    log = PlayerLog()
    stop = asyncio.Event()
    player = asyncio.create_task(play_hls(proxy, f"/live/{CHANNEL}.m3u8", stop=stop, log=log, reload_seconds=0.5))
    await fire_after_segments(emu, faults, player.done, segments=3)
    # then three more segments of the last new transcode
    await fire_after_segments(emu, [lambda: None], player.done, segments=3)
    stop.set()
    async with asyncio.timeout(30):
        await player
    return log


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.slow
async def test_segments_served_across_restarts_concatenate_into_one_stream(
        emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(segment_seconds=1, initial_segments=3, transcode_ready_seconds=0.3)
    proxy = await proxy_factory(emu, **{"hls.idle_timeout": 30})
    initiates = emu.state.counters.transcodes_started
    log = await play_across(proxy, emu, [emu.state.expire_sessions, lambda: drop_transcode(emu)])
    assert log.errors == []
    assert emu.state.counters.transcodes_started >= initiates + 3
    # the playlist still marks each join (hls.js and AVPlayer reset their decoders there)
    assert log.saw_discontinuity
    joined = b"".join(log.segments.values())
    assert continuity_breaks(joined) == []
    assert FFPROBE is not None
    probe = await run(FFPROBE, "-v", "error", "-show_entries", "packet=stream_index,dts,flags", "-of", "json", "-",
                      timeout=60, stdin=joined)
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr
    packets: list[dict[str, Any]] = json.loads(probe.stdout)["packets"]
    last: dict[int, int] = {}
    for packet in packets:
        assert "C" not in packet["flags"], packet  # ffmpeg's mark for a packet it found corrupt
        stream, dts = packet["stream_index"], int(packet["dts"])
        assert dts > last.get(stream, -1), (stream, last.get(stream), dts)
        last[stream] = dts
    assert len(last) == 2


_HLSJS_PLAYER = """async (src) => {
    await new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "/ui/vendor/hls.min.js";
        script.onload = resolve;
        script.onerror = () => reject(new Error("hls.js did not load"));
        document.head.appendChild(script);
    });
    const video = document.createElement("video");
    video.id = "splice-video";
    video.muted = true;
    document.body.appendChild(video);
    window.spliceErrors = [];
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) window.spliceErrors.push(`${data.type}: ${data.details}`);
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    await video.play();
}"""


@pytest.mark.slow
async def test_hlsjs_plays_on_across_an_expiry(emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory,
                                               page: Page) -> None:
    emu = await emulator_factory(segment_seconds=1, initial_segments=3, transcode_ready_seconds=0.3)
    proxy = await proxy_factory(emu, **{"hls.idle_timeout": 30})
    await page.goto(str(proxy.make_url("/")))
    await page.evaluate(_HLSJS_PLAYER, f"/live/{CHANNEL}.m3u8")
    await page.wait_for_function("document.getElementById('splice-video').currentTime > 2", timeout=45_000)
    started = emu.state.counters.transcodes_started
    emu.state.expire_sessions()
    at_expiry = await page.evaluate("document.getElementById('splice-video').currentTime")
    await emu.state.wait_for(lambda: emu.state.counters.transcodes_started > started, seconds=30)
    # 15 s more of the stream: through the old transcode's last segments and well into the new one's
    await page.wait_for_function(f"document.getElementById('splice-video').currentTime > {at_expiry + 15}",
                                 timeout=60_000)
    assert await page.evaluate("window.spliceErrors") == []
    assert not await page.evaluate("document.getElementById('splice-video').paused")
