"""The ``remux`` case (issue 12): HLS packaged by the proxy from the 5 Mbit/s live channel.

- **CPU per packaged channel**: the proxy's user+system time from /proc while it packages one
  channel that a client keeps watched (a playlist request every 2 s, no segment downloads), over
  30 s (quick: 5 s); beside it the packager's own share (``remux_packaging_seconds``).
- **first segment**: from the packaging session's first upstream byte to its first listed segment
  (``remux_first_segment_seconds``; the benchmark channel's GOP is 2 s).
- **200 HLS viewers** of one remuxed channel fetching the listed segments as fast as they can (wrk),
  beside the same load on the transcode-mode fan-out (segments from the proxy's cache), same run.
- **zap time**: ``ffmpeg -frames:v 1`` from spawn to exit (the first decoded frame) for a channel
  another viewer already watches and for one nobody watches, remux against transcode against live
  TS; ffmpeg decoding a local segment file is the floor every number includes.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cases
import harness as h

REMUX_CONFIG = "hls:\n  mode: remux\n"
TRANSCODE_CONFIG = "hls:\n  mode: transcode\n"
#: channels of the emulator's line-up (the upstream nginx serves the same 5 Mbit/s file for all)
RUNNING, COLD_REMUX, COLD_TRANSCODE, COLD_TS = 7181, 7182, 7183, 7184


def metric(base: str, name: str) -> float:
    status, body = h.http_get(f"{base}/metrics")
    if status != 200:
        raise h.BenchError(f"/metrics: HTTP {status}")
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", body.decode(), re.M)
    return float(match.group(1)) if match else 0.0


@contextmanager
def watching(url: str, every: float = 2.0) -> Iterator[None]:
    """A player that keeps the channel watched: a playlist request every ``every`` seconds."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            h.http_get(url, timeout=10)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)


def zap(url: str, *, timeout: float = 60) -> float:
    """Seconds from starting ffmpeg to its first decoded video frame (it exits right after)."""
    cmd = h.pinned(["ffmpeg", "-nostdin", "-v", "error", "-i", url, "-frames:v", "1", "-f", "null", "-"],
                   h.CLIENT_CORE)
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise h.BenchError(f"ffmpeg on {url}: {done.stderr.decode(errors='replace')[-500:]}")
    return took


def _remux_run(ws: h.Workspace, plan: cases.Plan, seconds: float) -> dict[str, float]:
    row: dict[str, float] = {}
    with ws.proxy("asyncio", REMUX_CONFIG) as p:
        playlist = f"{p.url}/live/{RUNNING}.m3u8"
        sent = time.monotonic()
        status, body = h.http_get(playlist, timeout=30)
        if status != 200:
            raise h.BenchError(f"remux playlist: HTTP {status} {body[:200]!r}")
        row["first_playlist_s"] = time.monotonic() - sent
        row["first_segment_s"] = metric(p.url, "nextpvr_proxy_remux_first_segment_seconds_sum")
        with watching(playlist):
            cpu0, pack0, t0 = h.cpu_seconds([p.pid]), metric(p.url, "nextpvr_proxy_remux_packaging_seconds_total"), \
                time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            row["cpu_share"] = (h.cpu_seconds([p.pid]) - cpu0) / elapsed
            row["packaging_share"] = (metric(p.url, "nextpvr_proxy_remux_packaging_seconds_total") - pack0) / elapsed
            # zap: this channel runs (the watcher), the others nobody watches yet
            row["zap_remux_running_s"] = zap(playlist)
            row["zap_ts_running_s"] = zap(f"{p.url}/live/{RUNNING}.ts")
            row["zap_remux_cold_s"] = zap(f"{p.url}/live/{COLD_REMUX}.m3u8")
            row["zap_ts_cold_s"] = zap(f"{p.url}/live/{COLD_TS}.ts")
            row["zap_transcode_cold_s"] = zap(f"{p.url}/live/{COLD_TRANSCODE}.m3u8?mode=transcode")
            row["zap_transcode_running_s"] = zap(f"{p.url}/live/{COLD_TRANSCODE}.m3u8?mode=transcode")
            # 200 viewers of the running channel's listed segments
            _body, paths = cases.start_live(p, RUNNING)
            r = h.run_wrk(p.url + "/", connections=200, seconds=plan.seconds,
                          paths=cases.write_paths(ws, "remux-200", paths))
            cases.check_wrk("remux 200 viewers", r)
            row |= {"viewers_mb_s": r.mb_per_s, "viewers_p99_ms": r.p99_ms, "hwm_mb": p.hwm_mb()}
    with ws.proxy("asyncio", TRANSCODE_CONFIG) as t:
        _body, paths = cases.start_live(t, RUNNING)
        r = h.run_wrk(t.url + "/", connections=200, seconds=plan.seconds,
                      paths=cases.write_paths(ws, "transcode-200", paths))
        cases.check_wrk("transcode 200 viewers", r)
        row |= {"transcode_mb_s": r.mb_per_s, "transcode_p99_ms": r.p99_ms, "transcode_hwm_mb": t.hwm_mb()}
    row["floor_s"] = zap(str(ws.media.root / "live" / "seg0.ts"))
    return row


def remux(ws: h.Workspace, plan: cases.Plan) -> dict[str, Any]:
    seconds = 5.0 if plan.quick else 30.0
    runs = []
    for run in range(plan.runs):
        row = _remux_run(ws, plan, seconds)
        runs.append(row)
        cases.log(f"remux run {run + 1}: CPU {100 * row['cpu_share']:.1f}% (packaging "
                  f"{100 * row['packaging_share']:.2f}%), first segment {row['first_segment_s']:.2f} s, "
                  f"200 viewers {row['viewers_mb_s']:.0f} MB/s (transcode {row['transcode_mb_s']:.0f}), "
                  f"zap running {row['zap_remux_running_s']:.2f} s / cold {row['zap_remux_cold_s']:.2f} s")
    return {"runs": runs, "median": cases.summarise(runs), "cpu_seconds": seconds}
