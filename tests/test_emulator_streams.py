"""The NextPVR emulator's media side: /live channels and tuners, recordings with Range and growth,
timeshift, transcode segments as real H.264 + AAC, the restart hook and the stream fault hooks."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from proxy.emulator import Emulator, EmulatorConfig
from proxy.media.library import MediaLibrary
from tests.emulator_client import EmuClient as Emu
from tests.emulator_client import MakeEmu

NO_TUNER = "No tuner was available for the requested channel."


@pytest.fixture
def make_emu(make_emu_client: MakeEmu) -> MakeEmu:
    # logged in; a transcode is ready sooner than in the API tests
    return functools.partial(make_emu_client, login=True, transcode_ready_seconds=0.05)


async def probe(data: bytes) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-of",
        "json",
        "-show_streams",
        "-i",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(data), 30)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def codecs(info: dict[str, Any]) -> set[str]:
    return {s["codec_name"] for s in info["streams"]}


async def read_until_closed(resp: aiohttp.ClientResponse, seconds: float = 5.0) -> None:
    """Drain a body that the server is about to cut; fails if it stays open."""
    async with asyncio.timeout(seconds):
        try:
            while await resp.content.read(65536):
                pass
        except aiohttp.ClientError:
            pass


# -- /live channels and tuners ----------------------------------------------------------------------------
async def test_emulator_class_serves_and_stops_with_open_streams(media_library: MediaLibrary) -> None:
    async with Emulator(EmulatorConfig(segment_seconds=1), media_library) as emu:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emu.url)
        async with aiohttp.ClientSession() as http:
            async with http.get(emu.url + "/service", params={"method": "session.initiate"}) as resp:
                body = await resp.text()
            sid = re.search(r"<sid>([0-9a-f]{32})</sid>", body)
            salt = re.search(r"<salt>([-0-9a-f]{36})</salt>", body)
            assert sid and salt
            digest = hashlib.md5(f":{hashlib.md5(b'0000').hexdigest()}:{salt[1]}".encode()).hexdigest()
            async with http.get(
                emu.url + "/service", params={"method": "session.login", "sid": sid[1], "md5": digest}
            ) as resp:
                assert '<rsp stat="ok">' in await resp.text()
            live = await http.get(emu.url + "/live", params={"channel": "7", "sid": sid[1]})
            assert live.status == 200 and await live.content.readexactly(188 * 10)
            assert emu.state.live_streams_active == 1
            started = time.monotonic()
            await emu.stop()
            assert time.monotonic() - started < 3
            assert emu.state.tuners_in_use == 0
            await read_until_closed(live)
            live.close()


async def test_live_is_endless_ts_without_content_length(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    resp = await emu.open_live(channeloid=7181)
    try:
        assert resp.status == 200 and resp.content_type == "video/mp2t"
        assert "Content-Length" not in resp.headers
        head = await resp.content.readexactly(188 * 4)
        assert head[0] == 0x47 and head[188] == 0x47
        assert emu.state.tuners_in_use == 1 and emu.state.live_streams_active == 1
        assert emu.state.counters.live_opened == 1
    finally:
        resp.close()


@pytest.mark.parametrize(
    "params",
    [{"channeloid": 7182}, {"channel_id": 7182}, {"channel": "4.2"}, {"channel": "7"}],
)
async def test_live_channel_parameters_and_client_sid(make_emu: MakeEmu, params: dict[str, Any]) -> None:
    emu = await make_emu()
    async with emu.client.get("/live", params={**params, "client": f"XBMC-{emu.sid}"}) as resp:
        assert resp.status == 200
        assert (await resp.content.readexactly(188))[0] == 0x47


async def test_live_refusals(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    async with emu.client.get("/live", params={"channeloid": 7181}) as resp:
        assert resp.status == 500
    async with emu.client.get("/live", params={"channeloid": 7181, "sid": "f" * 32}) as resp:
        assert resp.status == 500
    async with emu.client.get("/live", params={"channeloid": 999, "sid": emu.sid}) as resp:
        assert resp.status == 404
    async with emu.client.get("/live", params={"channel": "4.9", "sid": emu.sid}) as resp:
        assert resp.status == 404
    assert emu.state.tuners_in_use == 0
    async with emu.client.head("/live", params={"channeloid": 7181, "sid": emu.sid}) as resp:
        assert resp.status == 200 and resp.content_type == "video/mp2t"
    assert emu.state.tuners_in_use == 0
    open_ = await make_emu(require_sid_for_streams=False)
    async with open_.client.get("/live", params={"channeloid": 7181}) as resp:
        assert resp.status == 200


async def test_tuner_exhaustion_is_a_404_with_the_nextpvr_text(make_emu: MakeEmu) -> None:
    emu = await make_emu(tuners=2)
    first = await emu.open_live(channeloid=7181)
    second = await emu.open_live(channeloid=7183)
    try:
        assert first.status == second.status == 200
        async with emu.client.get("/live", params={"channeloid": 7184, "sid": emu.sid}) as resp:
            assert resp.status == 404
            assert (await resp.text()).strip() == NO_TUNER
        refused = await emu.api("channel.transcode.initiate", channel_id=7184, profile="720p")
        assert refused["stat"] == "fail"
        assert emu.state.counters.tuner_refusals == 2 and emu.state.tuners_in_use == 2
    finally:
        first.close()
        second.close()


async def test_tuner_released_on_disconnect(make_emu: MakeEmu) -> None:
    emu = await make_emu(tuners=1)
    resp = await emu.open_live(channeloid=7181)
    await resp.content.readexactly(188 * 8)
    resp.close()
    await emu.state.wait_for(lambda: emu.state.tuners_in_use == 0 and emu.state.live_streams_active == 0)
    again = await emu.open_live(channeloid=7183)
    try:
        assert again.status == 200
    finally:
        again.close()


async def test_shared_tuners_for_the_same_channel(make_emu: MakeEmu) -> None:
    emu = await make_emu(tuners=1, share_tuners=True)
    a, b = await emu.open_live(channeloid=7181), await emu.open_live(channeloid=7181)
    try:
        assert a.status == b.status == 200 and emu.state.tuners_in_use == 1
        async with emu.client.get("/live", params={"channeloid": 7183, "sid": emu.sid}) as other:
            assert other.status == 404
        a.close()
        await emu.state.wait_for(lambda: emu.state.live_streams_active == 1)
        assert emu.state.tuners_in_use == 1
    finally:
        a.close()
        b.close()
    await emu.state.wait_for(lambda: emu.state.tuners_in_use == 0)


async def test_live_expires_when_the_reader_stops(make_emu: MakeEmu) -> None:
    emu = await make_emu(realtime=False, live_expiry=0.5, live_send_buffer=16 * 1024, tuners=1)
    resp = await emu.open_live(channeloid=7181)
    try:
        await resp.content.readexactly(1000)  # then stop reading
        await emu.state.wait_for(lambda: emu.state.counters.live_expired == 1, 10)
        assert emu.state.tuners_in_use == 0 and emu.state.live_streams_active == 0
        await read_until_closed(resp)
    finally:
        resp.close()


async def test_lease_renews_a_live_read_that_is_not_consuming(make_emu: MakeEmu) -> None:
    emu = await make_emu(realtime=False, live_expiry=0.5, live_send_buffer=16 * 1024)
    resp = await emu.open_live(channeloid=7181)
    try:
        await resp.content.readexactly(1000)  # then stop reading, but keep renewing
        await emu.state.wait_for(lambda: any(h.renew for h in emu.state.live.values()), 5)
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            assert (await emu.api("channel.transcode.lease"))["stat"] == "ok"
            await asyncio.sleep(0.1)
        assert emu.state.counters.live_expired == 0 and emu.state.live_streams_active == 1
        await emu.state.wait_for(lambda: emu.state.counters.live_expired == 1, 5)
    finally:
        resp.close()


@pytest.mark.ffmpeg
async def test_live_stream_decodes_as_h264_and_aac(make_emu: MakeEmu) -> None:
    emu = await make_emu(realtime=False)
    resp = await emu.open_live(channel="5")
    try:
        data = await resp.content.readexactly(400_000)
    finally:
        resp.close()
    info = await probe(data)
    assert codecs(info) == {"h264", "aac"}


@pytest.mark.ffmpeg
async def test_transcode_segment_decodes_as_h264_and_aac(make_emu: MakeEmu) -> None:
    emu = await make_emu(segment_uri_style="absolute")
    await emu.api("channel.transcode.initiate", channel_id=7184, profile="720p")
    await emu.state.wait_for(lambda: time.monotonic() >= emu.state.transcodes[emu.sid].ready_at)
    async with emu.client.get(
        "/service", params={"method": "channel.transcode.m3u8", "sid": emu.sid}
    ) as resp:
        uri = next(line for line in (await resp.text()).splitlines() if line.startswith("http"))
    async with emu.client.session.get(uri) as resp:
        info = await probe(await resp.read())
    assert codecs(info) == {"h264", "aac"}
    assert float(info["streams"][0]["start_time"]) > 60  # the channel has been on air for a while


# -- recordings -------------------------------------------------------------------------------------------
async def test_recording_full_body_ranges_and_head(make_emu: MakeEmu) -> None:
    emu = await make_emu(recording_seconds=6)
    rec = await emu.recording_id("ready")
    async with await emu.recording(rec) as resp:
        assert resp.status == 200 and resp.headers["Accept-Ranges"] == "bytes"
        full = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(full) > 0 and full[0] == 0x47
    listed = (await emu.api("recording.list", recording_id=rec))["recordings"][0]
    assert listed["size"] == len(full)
    cases = {
        "bytes=100-199": (100, 200),
        "bytes=1000-": (1000, len(full)),
        "bytes=-500": (len(full) - 500, len(full)),
        f"bytes=10-{len(full) + 50}": (10, len(full)),
    }
    for header, (start, end) in cases.items():
        async with await emu.recording(rec, {"Range": header}) as resp:
            assert resp.status == 206, header
            assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(full)}"
            assert await resp.read() == full[start:end]
    for header in (f"bytes={len(full)}-", "bytes=-0"):
        async with await emu.recording(rec, {"Range": header}) as resp:
            assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{len(full)}"
    async with await emu.recording(rec, method="HEAD") as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(full)
        assert await resp.read() == b""
    path = listed["file"]
    async with emu.client.get("/stream", params={"f": path, "mode": "http", "sid": emu.sid}) as resp:
        assert resp.status == 200 and await resp.read() == full
    assert emu.state.counters.recording_stream_requests == 9


async def test_recording_refusals(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    ready = await emu.recording_id("ready")
    async with emu.client.get("/live", params={"recording": ready}) as resp:
        assert resp.status == 500  # no sid: "required ID not provided"
    async with await emu.recording(await emu.recording_id("pending")) as resp:
        assert resp.status == 404
    async with await emu.recording(await emu.recording_id("failed")) as resp:
        assert resp.status == 404
    async with await emu.recording(424242) as resp:
        assert resp.status == 404


async def test_recording_in_progress_grows(make_emu: MakeEmu) -> None:
    emu = await make_emu(growing_recording_elapsed=1.5)
    rec = await emu.recording_id("recording")
    size = (await emu.api("recording.list", recording_id=rec))["recordings"][0]["size"]
    assert size > 0
    async with await emu.recording(rec) as resp:
        assert resp.status == 200 and "Content-Length" not in resp.headers
        received = 0
        async with asyncio.timeout(5):
            while received <= size:
                received += len(await resp.content.read(65536))
    later = (await emu.api("recording.list", recording_id=rec))["recordings"][0]["size"]
    assert later > size
    async with await emu.recording(rec, {"Range": "bytes=100-"}) as resp:
        assert resp.status == 206 and resp.headers["Content-Range"].startswith("bytes 100-")
        assert resp.headers["Content-Range"].endswith("/*") and "Content-Length" not in resp.headers
        assert len(await resp.content.readexactly(1000)) == 1000


async def test_growing_flag_on_a_finished_recording_ends_with_the_file(make_emu: MakeEmu) -> None:
    emu = await make_emu(recording_seconds=4)
    rec = await emu.recording_id("ready")
    async with await emu.recording(rec) as resp:
        full = await resp.read()
    async with await emu.recording(rec, growing="true") as resp:
        assert resp.status == 200 and "Content-Length" not in resp.headers
        assert await resp.read() == full


async def test_recording_that_starts_and_finishes_while_watched(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    start = int(time.time()) + 1
    assert (
        await emu.api(
            "recording.save",
            name="Soon",
            channel=7182,
            time_t=start,
            duration=1,
            pre_padding=0,
            post_padding=0,
        )
    )["stat"] == "ok"
    rec = next(
        r for r in (await emu.api("recording.list", filter="pending"))["recordings"] if r["name"] == "Soon"
    )
    await emu.state.wait_for(
        lambda: emu.state.store.recordings[rec["id"]].status(time.time()) == "recording", 5
    )
    async with await emu.recording(rec["id"]) as resp:
        assert "Content-Length" not in resp.headers
        body = await asyncio.wait_for(resp.read(), 10)  # ends when the recording does
    async with await emu.recording(rec["id"]) as resp:
        assert int(resp.headers["Content-Length"]) == len(body) and await resp.read() == body
    assert (await emu.api("recording.list", recording_id=rec["id"]))["recordings"][0]["status"] == "ready"


# -- timeshift --------------------------------------------------------------------------------------------
async def test_timeshift_buffer_with_seek(make_emu: MakeEmu) -> None:
    emu = await make_emu(tuners=1)
    assert (await emu.api("channel.stream.start", channel_id=7183))["stat"] == "ok"
    whole = await emu.open_live(channeloid=7183)
    sought = await emu.open_live(channeloid=7183, seek="1000-")
    try:
        assert whole.status == sought.status == 200 and emu.state.tuners_in_use == 1
        head = await whole.content.readexactly(5000)
        assert await sought.content.readexactly(4000) == head[1000:]
        assert (await emu.api("channel.stream.stop"))["stat"] == "ok"
        assert emu.state.tuners_in_use == 0
        await read_until_closed(whole)
    finally:
        whole.close()
        sought.close()


# -- restart and faults -----------------------------------------------------------------------------------
async def test_restart_cuts_every_stream(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    live = await emu.open_live(channeloid=7181)
    growing = await emu.recording(await emu.recording_id("recording"))
    try:
        await live.content.readexactly(188)
        await growing.content.readexactly(188)
        emu.state.restart()
        assert emu.state.tuners_in_use == 0 and emu.state.live_streams_active == 0
        await read_until_closed(live)
        await read_until_closed(growing)
        assert (await emu.api("channel.list"))["code"] == 8
    finally:
        live.close()
        growing.close()


@pytest.fixture
async def segment_url(make_emu: MakeEmu) -> tuple[Emu, str]:
    emu = await make_emu(segment_uri_style="absolute", transcode_ready_seconds=0)
    await emu.api("channel.transcode.initiate", channel_id=7181, profile="720p")
    async with emu.client.get(
        "/service", params={"method": "channel.transcode.m3u8", "sid": emu.sid}
    ) as resp:
        uri = [line for line in (await resp.text()).splitlines() if line.startswith("http")][-1]
    return emu, uri


async def test_fault_reset_segment_mid_body(segment_url: tuple[Emu, str]) -> None:
    emu, uri = segment_url
    emu.state.faults.reset_next_segments(1)
    with pytest.raises(aiohttp.ClientError):
        async with emu.client.session.get(uri) as resp:
            await resp.read()
    async with emu.client.session.get(uri) as resp:
        body = await resp.read()
        assert resp.status == 200 and len(body) == int(resp.headers["Content-Length"])


async def test_fault_slow_segments(segment_url: tuple[Emu, str]) -> None:
    emu, uri = segment_url
    async with emu.client.session.get(uri) as resp:
        expected = await resp.read()
    emu.state.faults.slow_next_segments(1, delay=0.3)
    started = time.monotonic()
    async with emu.client.session.get(uri) as resp:
        assert await resp.read() == expected
    assert time.monotonic() - started >= 0.3
    rate = len(expected) / 0.4  # whole segment in about 0.4 s
    emu.state.faults.slow_next_segments(1, bytes_per_second=rate)
    started = time.monotonic()
    async with emu.client.session.get(uri) as resp:
        assert await resp.read() == expected
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    async with emu.client.session.get(uri) as resp:
        await resp.read()
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize("kind", ["segment", "live", "recording", "any"])
async def test_fault_http_500_by_kind(segment_url: tuple[Emu, str], kind: Any) -> None:
    emu, uri = segment_url
    rec = await emu.recording_id("ready")
    emu.state.faults.fail_500(kind, 1)

    async def segment() -> aiohttp.ClientResponse:
        return await emu.client.session.get(uri)

    requests: dict[str, Callable[[], Awaitable[aiohttp.ClientResponse]]] = {
        "segment": segment,
        "live": lambda: emu.open_live(channeloid=7183),
        "recording": lambda: emu.recording(rec, method="HEAD"),
    }
    statuses = {}
    for name, make in requests.items():
        async with await make() as resp:
            statuses[name] = resp.status
    failed = {name for name, status in statuses.items() if status == 500}
    assert failed == ({"segment"} if kind == "any" else {kind})


async def test_fault_stall_live(make_emu: MakeEmu) -> None:
    emu = await make_emu(write_chunk=4096)
    resp = await emu.open_live(channeloid=7184)
    try:
        await resp.content.readexactly(188)
        arrivals = []
        async with asyncio.timeout(8):
            for _ in range(5):  # past the joining burst: from here on data is paced
                await resp.content.readany()
            emu.state.faults.stall_live(0.8)
            stalled_at = time.monotonic()
            while time.monotonic() < stalled_at + 1.3:
                await resp.content.readany()
                arrivals.append(time.monotonic())
        gaps = [b - a for a, b in zip([stalled_at, *arrivals], arrivals, strict=False)]
        assert max(gaps) >= 0.6
        assert len(arrivals) > 2  # and it resumed
    finally:
        resp.close()
