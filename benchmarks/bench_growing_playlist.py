"""CPU the proxy spends keeping a large, growing live playlist current (issue 11, section 4).

A NextPVR stand-in (``tests/fakes/hostile_nextpvr.py``) serves a recording in progress as an
EVENT playlist of ~1 MB (10,000 segments with NextPVR-length URIs) that grows by one segment at
every fetch; the proxy refreshes it every second, as it does for a viewer. Reported: the
process's CPU seconds over ``--seconds`` of wall time, and how many refreshes ran. Before
incremental rewriting every refresh re-rewrote (re-signed) all 10,000 URIs; now only the new
ones. Both run in this one process (the stand-in's share, building and sending 1.3 MB a second,
is the same in both).

    .venv/bin/python benchmarks/bench_growing_playlist.py [--seconds 12] [--segments 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.runner import start_site
from tests.conftest import TEST_PIN, proxy_config
from tests.fakes.hostile_nextpvr import HostileNextPVR
from tests.fakes.nextpvr_fake import FakeRequest, xml

RECORDING = 4411


def event_playlist(count: int) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:EVENT",
             "#EXT-X-MEDIA-SEQUENCE:0"]
    for seq in range(count):
        lines += ["#EXTINF:2.000,", f"/service?method=recording.transcode.segment&recording_id={RECORDING}"
                  f"&profile=720p&segment={seq:06d}&client=proxy-bench-0001"]
    return ("\n".join(lines) + "\n").encode()


async def main(seconds: float, segments: int) -> None:
    fake = HostileNextPVR(pin=TEST_PIN)
    fetches = 0

    async def growing(req: FakeRequest) -> web.StreamResponse:
        nonlocal fetches
        fetches += 1
        return web.Response(body=event_playlist(segments + fetches), content_type="application/x-mpegURL")

    async def recording_list(req: FakeRequest) -> web.StreamResponse:
        return xml(f"<recordings><recording><id>{RECORDING}</id><name>Marathon</name>"
                   "<start_time_ticks>1714586400</start_time_ticks><duration_seconds>60060"
                   "</duration_seconds><status>Recording</status>"
                   "<file>/recordings/Marathon/Marathon.ts</file></recording></recordings>")

    for method in ("initiate", "status", "lease", "stop"):
        fake.on(f"recording.transcode.{method}", fake._handlers[f"channel.transcode.{method}"])
    fake.on("recording.transcode.m3u8", growing)
    fake.on("recording.list", recording_list)
    fake_runner = web.AppRunner(fake.app, access_log=None)
    await fake_runner.setup()
    site = web.TCPSite(fake_runner, "127.0.0.1", 0)
    await site.start()
    port = fake_runner.addresses[0][1]
    config = proxy_config(f"http://127.0.0.1:{port}", **{
        "hls.prefetch": False, "hls.keepalive_interval": 1, "hls.idle_timeout": 3600,
        "logging.level": "WARNING"})
    app = create_app(config, registry=CollectorRegistry())
    runner, proxy_port = await start_site(app, "127.0.0.1", 0, shutdown_timeout=1)
    size = len(event_playlist(segments))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{proxy_port}/recordings/{RECORDING}.m3u8") as resp:
                assert resp.status == 200, await resp.text()
            before_fetches, cpu0, wall0 = fetches, time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)  # the proxy refreshes on its own; this only measures
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        await runner.cleanup()
        await fake_runner.cleanup()
    print(f"growing EVENT playlist of {segments} segments ({size / 1e6:.2f} MB): "
          f"{cpu:.2f} CPU-s in {wall:.1f} s wall, {fetches - before_fetches} refreshes "
          f"({cpu / max(1, fetches - before_fetches) * 1000:.0f} ms CPU per refresh)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--segments", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.segments))
