"""The command line as users run it: ``demo``, ``emulator`` + ``serve``, and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import TEST_PIN
from tests.players import ffprobe_codecs, needs_ffmpeg
from tests.processes import ROOT, Proc, free_port
from tests.processes import spawn as spawn_process


async def emulator_state(http: aiohttp.ClientSession, port: int, done: Callable[[dict[str, Any]], bool],
                         timeout: float = 5) -> dict[str, Any]:
    """The emulator's counters, once ``done(state)`` holds. It runs in another process, so the
    only way to see its state change is to ask again; each ask is bounded by ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            async with http.get(f"http://127.0.0.1:{port}/_emulator/state") as resp:
                state: dict[str, Any] = await resp.json()
            if done(state):
                return state
            await asyncio.sleep(0.1)


def spawn(*args: str) -> contextlib.AbstractAsyncContextManager[Proc]:
    """``python -m proxy <args>`` with unbuffered output."""
    return spawn_process([sys.executable, "-m", "proxy", *args], dict(os.environ, PYTHONUNBUFFERED="1"))


@needs_ffmpeg
@pytest.mark.ffmpeg
async def test_demo_starts_and_serves_decodable_live_tv() -> None:
    port, emu_port = free_port(), free_port()
    async with spawn("demo", "--port", str(port), "--emulator-port", str(emu_port)) as demo:
        await demo.wait_for_line("Stop with Ctrl-C")
        text = "\n".join(demo.lines)
        assert f"http://127.0.0.1:{port}/live/7181.m3u8" in text
        assert f"http://127.0.0.1:{port}/playlist.m3u" in text
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/live/7181.m3u8") as resp:
                assert resp.status == 200
                playlist = await resp.text()
            # hls.mode auto (the default) remuxes the H.264 channel
            segment_path = next(line for line in playlist.splitlines() if line.startswith("/remux/"))
            async with http.get(f"http://127.0.0.1:{port}{segment_path}") as resp:
                assert resp.status == 200
                segment = await resp.read()
        assert await ffprobe_codecs("-", data=segment) == ["aac", "h264"]
        assert await demo.terminate() == 0


async def test_sigterm_during_playback_frees_every_tuner(tmp_path: Path) -> None:
    emu_port, port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"nextpvr:\n  base_url: 'http://127.0.0.1:{emu_port}'\n  pin: '${{PIN}}'\n"
        f"server:\n  host: '127.0.0.1'\n  port: {port}\n  shutdown_grace: 3\n")
    async with spawn("emulator", "--port", str(emu_port), "--pin", TEST_PIN) as emulator:
        await emulator.wait_for_line("NextPVR emulator on")
        os.environ["PIN"] = TEST_PIN
        try:
            async with spawn("serve", "--config", str(config)) as server:
                await server.wait_for_line("listening on")
                async with aiohttp.ClientSession() as http:
                    base = f"http://127.0.0.1:{port}"
                    hls = await http.get(f"{base}/live/7181.m3u8")
                    assert hls.status == 200
                    ts = await http.get(f"{base}/live/7183.ts")
                    assert ts.status == 200
                    await ts.content.readany()
                    async with http.get(f"http://127.0.0.1:{emu_port}/_emulator/state") as resp:
                        state = await resp.json()
                    assert state["tuners_in_use"] == 2
                    started = asyncio.get_running_loop().time()
                    code = await server.terminate(timeout=15)
                    assert code == 0, server.lines[-20:]
                    assert asyncio.get_running_loop().time() - started < 3 + 5
                    with contextlib.suppress(aiohttp.ClientError):
                        await ts.read()  # the TS viewer was ended by the shutdown
                    ts.close()
                    state = await emulator_state(http, emu_port, lambda s: s["tuners_in_use"] == 0)
            assert state["tuners_in_use"] == 0
            assert state["transcodes_active"] == 0
            assert state["sessions"] == 0, "the proxy did not log out of NextPVR"
            log = "\n".join(server.lines)
            assert TEST_PIN not in log
            for sid in state["issued_sids"]:
                assert sid not in log
        finally:
            os.environ.pop("PIN", None)
        assert await emulator.terminate() == 0


def test_python_dash_m_proxy_help() -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "proxy", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0
    for command in ("serve", "emulator", "demo", "check-config"):
        assert command in proc.stdout
