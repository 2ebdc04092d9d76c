"""Real clients for tests: ffmpeg/ffprobe as subprocesses, and a small HLS "player" loop."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field
from typing import Any

import m3u8  # test oracle: parses what the proxy served, never writes anything
import pytest

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None or FFPROBE is None, reason="ffmpeg/ffprobe not installed")


@dataclass
class ProcResult:
    returncode: int
    stdout: str
    stderr: str


async def run(*args: str, timeout: float, stdin: bytes | None = None) -> ProcResult:
    """Run a command; kill it and fail the test if it outlives ``timeout``."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"{args[0]} did not finish within {timeout}s")
    return ProcResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def ffmpeg_decode(url: str, *, seconds: float | None, timeout: float, extra: tuple[str, ...] = ()
                        ) -> ProcResult:
    """Decode ``url`` to nowhere; ``-v error`` so stderr holds only real problems."""
    assert FFMPEG is not None
    args = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", *extra, "-i", url]
    if seconds is not None:
        args += ["-t", str(seconds)]
    args += ["-f", "null", "-"]
    return await run(*args, timeout=timeout)


async def ffprobe_codecs(url_or_dash: str, *, timeout: float = 30, data: bytes | None = None) -> list[str]:
    """Codec names of the streams ffprobe finds (``-`` reads ``data`` from stdin)."""
    assert FFPROBE is not None
    result = await run(FFPROBE, "-v", "error", "-show_entries", "stream=codec_name", "-of", "json",
                       url_or_dash, timeout=timeout, stdin=data)
    assert result.returncode == 0, result.stderr
    streams: list[dict[str, Any]] = json.loads(result.stdout).get("streams", [])
    return sorted(s["codec_name"] for s in streams)


@dataclass
class PlayerLog:
    media_sequences: list[int] = field(default_factory=list)
    discontinuity_sequences: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    segments: dict[str, bytes] = field(default_factory=dict)
    saw_discontinuity: bool = False
    errors: list[str] = field(default_factory=list)


async def play_hls(session: Any, url: str, *, stop: asyncio.Event,
                   log: PlayerLog, reload_seconds: float = 1.0) -> None:
    """Behave like a live HLS player: reload the playlist, fetch every new segment in order.

    ``session`` is an aiohttp ClientSession (absolute URLs) or a TestClient (paths).

    A player paces its reloads by the clock (RFC 8216bis 6.3.4), so this loop waits
    ``reload_seconds`` between reloads; everything it checks is recorded in ``log``.
    """
    while not stop.is_set():
        async with session.get(url) as resp:
            log.statuses.append(resp.status)
            if resp.status != 200:
                log.errors.append(f"playlist {resp.status}: {(await resp.text())[:200]}")
            else:
                playlist = m3u8.loads(await resp.text())
                log.media_sequences.append(playlist.media_sequence or 0)
                log.discontinuity_sequences.append(playlist.discontinuity_sequence or 0)
                for seg in playlist.segments:
                    log.saw_discontinuity |= bool(seg.discontinuity)
                    if seg.uri in log.segments:
                        continue
                    async with session.get(seg.uri) as sresp:
                        log.statuses.append(sresp.status)
                        body = await sresp.read()
                        if sresp.status != 200:
                            log.errors.append(f"segment {sresp.status}: {body[:200]!r}")
                        elif not body.startswith(b"\x47"):
                            log.errors.append("segment does not start with a TS sync byte")
                        log.segments[seg.uri] = body
        try:
            await asyncio.wait_for(stop.wait(), reload_seconds)
        except TimeoutError:
            pass
