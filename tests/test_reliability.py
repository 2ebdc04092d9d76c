"""Reliability under failure: real clients, the emulator's fault hooks, bounded outcomes, no leaks.

Every client request here is bounded (``REQUEST_BOUND`` seconds); every wait is on an event
(the emulator's or the proxy's state changing), bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.hls.manager import TranscodeManager
from proxy.keys import HTTP_KEY, SEGMENTS_KEY, TRANSCODES_KEY, TS_KEY
from proxy.ts.fanout import LiveTSManager
from tests.conftest import EmulatorFactory, ProxyFactory, app_of
from tests.players import PlayerLog, ffmpeg_decode, needs_ffmpeg, play_hls

HLS_CHANNEL = 7181
TS_CHANNEL = 7183
#: no client request in this file may take longer than this
REQUEST_BOUND = 20.0
IDLE = 1.5
LINGER = 1.0
#: a stalled reader is cut off after this long without progress (plus what kernel buffers hold)
SEND_TIMEOUT = 2.0


def transcodes(client: TestClient[Any, Any]) -> TranscodeManager:
    return app_of(client)[TRANSCODES_KEY]


def ts_streams(client: TestClient[Any, Any]) -> LiveTSManager:
    return app_of(client)[TS_KEY]


async def fast_emulator(factory: EmulatorFactory, **extra: Any) -> Emulator:
    config: dict[str, Any] = {"segment_seconds": 1, "initial_segments": 3, "transcode_ready_seconds": 0.3,
                              "write_chunk": 8192}
    config.update(extra)
    return await factory(**config)


async def proxy_for(factory: ProxyFactory, emu: Emulator, **extra: Any) -> TestClient[Any, Any]:
    config: dict[str, Any] = {"hls.idle_timeout": IDLE, "ts.linger": LINGER, "server.send_timeout": SEND_TIMEOUT,
                              "nextpvr.timeouts.read": 5, "ts.socket_send_buffer": 16384,
                              "ts.viewer_buffer_bytes": 65536}
    config.update(extra)
    return await factory(emu, **config)


class TSViewer:
    """Reads a live TS stream and counts; records how it ended."""

    def __init__(self, client: TestClient[Any, Any], path: str) -> None:
        self.client = client
        self.path = path
        self.received = 0
        self.ended: str | None = None
        self.changed = asyncio.Event()
        self.resp: Any = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            self.resp = resp = await self.client.get(self.path)
            if resp.status != 200:
                self.ended = f"status {resp.status}"
                return
            async for chunk in resp.content.iter_any():
                self.received += len(chunk)
                self.changed.set()
            self.ended = "eof"
        except Exception as exc:  # recorded, asserted on by the test
            self.ended = type(exc).__name__
        finally:
            self.changed.set()

    async def wait_bytes(self, count: int) -> None:
        while self.received < count and self.ended is None:
            self.changed.clear()
            await self.changed.wait()
        assert self.ended is None, f"TS viewer ended: {self.ended}"

    async def close(self) -> None:
        """A clean close: the player hangs up its connection."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if self.resp is not None:
            self.resp.close()


async def all_of(*conditions: Callable[[], Awaitable[None]]) -> None:
    await asyncio.gather(*(c() for c in conditions))


async def assert_no_leaks(proxy: TestClient[Any, Any], emu: Emulator) -> None:
    """After every viewer left: NextPVR has its tuners back, and the proxy holds no stream task,
    no download and no upstream connection."""
    # a stalled reader is cut off 1 to 1.5 send timeouts after its last progress
    async with asyncio.timeout(IDLE + LINGER + 1.5 * SEND_TIMEOUT + 5):
        await transcodes(proxy).wait_for(lambda: not transcodes(proxy).running())
        await ts_streams(proxy).wait_for(lambda: not ts_streams(proxy).streams())
    try:
        await emu.state.wait_for(lambda: emu.state.tuners_in_use == 0 and emu.state.transcodes_active == 0,
                                 seconds=5)
    except TimeoutError:
        snap = emu.state.snapshot()
        pytest.fail(f"NextPVR still busy: tuners {snap['tuners_in_use']}, transcodes {snap['transcodes_active']}, "
                    f"live {snap['live_streams_active']}")
    app = app_of(proxy)
    assert app[SEGMENTS_KEY]._tasks == set(), "segment downloads still running"
    stream_tasks = [t for t in asyncio.all_tasks()
                    if (t.get_name().startswith(("transcode-", "ts-"))) and not t.done()]
    assert stream_tasks == [], stream_tasks
    connector = app[HTTP_KEY].connector
    assert connector is not None
    assert len(connector._acquired) == 0, "connections to NextPVR still in use"


# -- NextPVR restarts while people watch --------------------------------------------------------


async def test_restart_during_playback_of_ten_hls_and_five_ts_viewers(
    emulator_factory: EmulatorFactory, proxy_factory: ProxyFactory
) -> None:
    emu = await fast_emulator(emulator_factory)
    proxy = await proxy_for(proxy_factory, emu)
    stop = asyncio.Event()
    logs = [PlayerLog() for _ in range(10)]
    players = [asyncio.create_task(play_hls(proxy, f"/live/{HLS_CHANNEL}.m3u8", stop=stop, log=log,
                                            reload_seconds=0.5)) for log in logs]
    viewers = [TSViewer(proxy, f"/live/{TS_CHANNEL}.ts") for _ in range(5)]
    try:
        async with asyncio.timeout(30):
            await emu.state.wait_for(lambda: all(len(log.segments) >= 3 for log in logs), seconds=30)
            await all_of(*(lambda v=v: v.wait_bytes(30_000) for v in viewers))
        logins = emu.state.counters.logins_ok
        assert emu.state.counters.transcodes_started == 1
        assert emu.state.counters.live_opened == 1
        seen = [len(log.segments) for log in logs]
        got = [v.received for v in viewers]

        emu.state.restart()

        async with asyncio.timeout(40):
            await emu.state.wait_for(
                lambda: all(len(log.segments) >= n + 4 and log.saw_discontinuity for log, n in zip(logs, seen,
                                                                                                strict=True)),
                seconds=40)
            await all_of(*(lambda v=v, g=g: v.wait_bytes(g + 30_000) for v, g in zip(viewers, got, strict=True)))
    finally:
        stop.set()
        await asyncio.gather(*players, return_exceptions=True)
        for viewer in viewers:
            await viewer.close()
    for log in logs:
        assert log.errors == []
        assert set(log.statuses) == {200}
        assert log.media_sequences == sorted(log.media_sequences)
        assert log.discontinuity_sequences == sorted(log.discontinuity_sequences)
    # TS viewers were reconnected, not ended; one new upstream connection for all five
    assert all(v.ended is None for v in viewers)
    assert emu.state.counters.live_opened == 2
    # exactly one re-login per stream: the transcode's session and the live-TS (main) session
    assert emu.state.counters.logins_ok - logins == 2
    assert emu.state.counters.transcodes_started == 2
    await assert_no_leaks(proxy, emu)


# -- upstream faults -------------------------------------------------------------------------


FAULTS: dict[str, Callable[[Emulator], None]] = {
    "segment reset mid-body": lambda emu: emu.state.faults.reset_next_segments(1),
    "slow segments": lambda emu: emu.state.faults.slow_next_segments(3, bytes_per_second=40_000),
    "one segment 500": lambda emu: emu.state.faults.fail_500("segment", 1),
    "playlist 500s": lambda emu: emu.state.faults.fail_500("playlist", 3),
    "garbage playlists": lambda emu: emu.state.faults.garbage_next_playlists(3),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_transient_fault_is_invisible_to_viewers(fault: str, emulator_factory: EmulatorFactory,
                                                       proxy_factory: ProxyFactory) -> None:
    emu = await fast_emulator(emulator_factory)
    proxy = await proxy_for(proxy_factory, emu)
    stop = asyncio.Event()
    log = PlayerLog()
    player = asyncio.create_task(play_hls(proxy, f"/live/{HLS_CHANNEL}.m3u8", stop=stop, log=log,
                                          reload_seconds=0.5))
    try:
        await emu.state.wait_for(lambda: len(log.segments) >= 2, seconds=20)
        FAULTS[fault](emu)
        await emu.state.wait_for(lambda: emu.state.faults.injected >= 1, seconds=20)
        seen = len(log.segments)
        await emu.state.wait_for(lambda: len(log.segments) >= seen + 4, seconds=30)
    finally:
        stop.set()
        await player
    assert log.errors == [], log.errors
    assert set(log.statuses) == {200}
    assert log.media_sequences == sorted(log.media_sequences)
    await assert_no_leaks(proxy, emu)


async def timed(coro: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    async with asyncio.timeout(REQUEST_BOUND):
        result = await coro
    return result, time.monotonic() - started


async def test_persistent_faults_give_clean_bounded_errors(emulator_factory: EmulatorFactory,
                                                           proxy_factory: ProxyFactory) -> None:
    emu = await fast_emulator(emulator_factory)
    proxy = await proxy_for(proxy_factory, emu)
    # a channel whose first playlist is garbage, again and again: 502, not a hang
    emu.state.faults.garbage_next_playlists(1000)
    resp, took = await timed(proxy.get(f"/live/{HLS_CHANNEL}.m3u8"))
    assert resp.status == 502
    assert took < REQUEST_BOUND
    emu.state.faults.clear()
    # segments that always fail: the retries give up and the client gets a clean 502
    text = await (await proxy.get(f"/live/{TS_CHANNEL}.m3u8")).text()
    emu.state.faults.fail_500("segment", 1000)
    uri = [line for line in text.splitlines() if line.startswith("/hls/")][-1]
    resp, took = await timed(proxy.get(uri + "?fresh"))
    assert resp.status in (200, 502)  # 200 only if the prefetch fetched it before the fault
    emu.state.faults.clear()
    # a segment that stalls longer than the read timeout: a 504 or a cut connection, bounded
    emu.state.faults.slow_next_segments(10, delay=30.0)
    newest = await (await proxy.get(f"/live/{TS_CHANNEL}.m3u8")).text()
    last = [line for line in newest.splitlines() if line.startswith("/hls/")][-1]
    try:
        resp, took = await timed(proxy.get(last))
        if resp.status == 200:
            await asyncio.wait_for(resp.read(), REQUEST_BOUND)
    except Exception:
        pass
    emu.state.faults.clear()
    await assert_no_leaks(proxy, emu)


# -- viewers leaving in every way ----------------------------------------------------------------


async def _raw_get(proxy: TestClient[Any, Any], path: str, *, rcvbuf: int = 4096) -> tuple[socket.socket,
                                                                                            asyncio.StreamReader,
                                                                                            asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (proxy.host, proxy.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    return sock, reader, writer


def _reset(sock: socket.socket, writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), like a player that crashed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_viewers_leaving_every_way_give_every_tuner_back(emulator_factory: EmulatorFactory,
                                                               proxy_factory: ProxyFactory) -> None:
    emu = await fast_emulator(emulator_factory, tuners=4)
    proxy = await proxy_for(proxy_factory, emu)
    # HLS: one player stops cleanly, one resets mid-segment, one stalls mid-segment
    text = await (await proxy.get(f"/live/{HLS_CHANNEL}.m3u8")).text()
    segment = next(line for line in text.splitlines() if line.startswith("/hls/"))
    sock_r, reader_r, writer_r = await _raw_get(proxy, segment)
    await reader_r.read(100)
    _reset(sock_r, writer_r)
    _sock_s, _reader_s, writer_s = await _raw_get(proxy, segment)  # never read
    # TS: a clean close, a reset, and a stalled reader
    clean = TSViewer(proxy, f"/live/{TS_CHANNEL}.ts")
    await clean.wait_bytes(10_000)
    await clean.close()
    sock_t, reader_t, writer_t = await _raw_get(proxy, f"/live/{TS_CHANNEL}.ts")
    await reader_t.read(1000)
    _reset(sock_t, writer_t)
    _sock_st, _reader_st, writer_st = await _raw_get(proxy, f"/live/{TS_CHANNEL}.ts")  # never read
    try:
        await assert_no_leaks(proxy, emu)
    finally:
        writer_s.close()
        writer_st.close()


# -- a real player through faults ---------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.ffmpeg
@pytest.mark.slow
async def test_ffmpeg_plays_thirty_seconds_while_faults_fire(emulator_factory: EmulatorFactory,
                                                           proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(segment_seconds=2)
    # a player that stalls on a fault must not look idle: keep the default-like idle timeout here
    proxy = await proxy_for(proxy_factory, emu, **{"hls.idle_timeout": 30})
    url = str(proxy.make_url(f"/live/{HLS_CHANNEL}.m3u8"))
    player = asyncio.create_task(ffmpeg_decode(url, seconds=30, timeout=120))
    faults: list[Callable[[], None]] = [
        lambda: emu.state.faults.reset_next_segments(1),
        lambda: emu.state.faults.slow_next_segments(1, bytes_per_second=100_000),
        lambda: emu.state.faults.fail_500("segment", 1),
        lambda: emu.state.faults.garbage_next_playlists(2),
        lambda: emu.state.faults.fail_500("playlist", 2),
        emu.state.restart,
    ]
    for fire in faults:
        served = emu.state.counters.segment_requests
        # pace the faults by what the player consumed, not by the clock
        def consumed(s: int = served) -> bool:
            return emu.state.counters.segment_requests >= s + 2 or player.done()

        await emu.state.wait_for(consumed, seconds=30)
        if player.done():
            break
        fire()
    result = await player
    assert result.returncode == 0, result.stderr
    assert emu.state.counters.restarts == 1
    # The restart joins a new transcode. ffmpeg's HLS reader ignores EXT-X-DISCONTINUITY, but the new
    # transcode's segments continue the old timestamps and counters (hls/continuity.py): nothing at all
    assert result.stderr == ""
