"""The ``latency`` case (issue 13): how far behind live a browser plays, and what blocked reloads cost.

- **hls.js in Chromium** (Debian's chromium driven by playwright, hls.js from node_modules as the
  proxy's web page serves it) plays the benchmark's 5 Mbit/s live channel (GOP 2 s) for 20 s
  (quick: 8 s) after it started: LL-HLS remux (``lowLatencyMode: true`` with hls.js's catch-up,
  ``maxLiveSyncPlaybackRate: 1.5``; the full run adds LL mode alone), plain remux
  (``hls.low_latency: false``) and transcode-mode HLS, one after the other in the same run. The
  value is the median of (wall clock - ``hls.playingDate``), sampled every 250 ms: how old the
  frame on screen is, counted from when the proxy received it (remux PDTs are the proxy's receipt
  times; a transcode playlist without PDTs gives n/a there) and hls.js's own ``hls.latency``.
  The full run adds LL-HLS with ``hls.part_duration: 0.2`` (MediaMTX's default).
- **1,000 blocked playlist requests** on one channel (the first part of the segment after the one
  that has just begun, so all of them block for about a segment): the proxy's CPU seconds from
  the first request to the last answer, and the release spread (first answer to last answer: the
  same part releases them all).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import aiohttp
import cases
import harness as h
from playwright.sync_api import sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS

LL_CONFIG = "hls:\n  mode: remux\n"
LL_FAST_CONFIG = "hls:\n  mode: remux\n  part_duration: 0.2\n"
PLAIN_CONFIG = "hls:\n  mode: remux\n  low_latency: false\n"
CHANNEL = 7181
BLOCKED = 1000

PAGE = """<!doctype html><html><body><video id="video" muted autoplay playsinline></video>
<script src="/ui/vendor/hls.min.js"></script>
<script>
window.fatal = []; window.ages = []; window.latency = [];
const hls = new Hls(%s);
hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.fatal.push(d.type + ':' + d.details); });
hls.loadSource(%r); hls.attachMedia(document.getElementById('video')); window.hls = hls;
window.sample = () => {
  if (hls.playingDate) window.ages.push(Date.now() - hls.playingDate.getTime());
  if (Number.isFinite(hls.latency)) window.latency.push(hls.latency);
};
</script></body></html>"""


#: hls.js options: LL mode alone stays where it started (a GOP before the edge at worst); with its
#: catch-up (playback up to 1.5x while behind the target) it settles at PART-HOLD-BACK
LL_CATCH_UP = '{lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5}'
LL_ONLY = '{lowLatencyMode: true}'
NOT_LL = '{lowLatencyMode: false}'


def play(base: str, path: str, *, options: str, seconds: float) -> dict[str, float]:
    """Median age of the playing frame (s; nan without PDTs) and hls.js's latency estimate."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            html = PAGE % (options, path)
            page.route(base + "/latency.html", lambda route: route.fulfill(body=html, content_type="text/html"))
            page.goto(base + "/latency.html")
            page.wait_for_function("document.getElementById('video').currentTime > 1", timeout=60_000)
            page.evaluate("window.ages = []; window.latency = []")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                page.evaluate("window.sample()")
                page.wait_for_timeout(250)
            state: dict[str, Any] = page.evaluate("({fatal: window.fatal, ages: window.ages, latency: window.latency})")
        finally:
            browser.close()
    if state["fatal"]:
        raise h.BenchError(f"hls.js on {path}: fatal error {state['fatal']}")
    ages = [a / 1000 for a in state["ages"]]
    return {"age_s": statistics.median(ages) if ages else float("nan"),
            "latency_s": statistics.median(state["latency"]) if state["latency"] else float("nan")}


def _live_edge(text: str) -> int:
    """The number of the newest complete segment in a served playlist."""
    first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
    skipped = re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", text)
    return first + (int(skipped.group(1)) if skipped else 0) + text.count("#EXTINF:") - 1


async def _blocked(url: str, count: int) -> tuple[list[float], list[int]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.get(url) as resp:
            edge = _live_edge(await resp.text())
        # a blocking reload that returns as soon as the next segment completes: then the one after it
        # has just begun, and its successor's first part is a whole segment away (all 1,000 block)
        async with session.get(f"{url}?_HLS_msn={edge + 1}") as resp:
            await resp.read()
        msn = edge + 3
        answered: list[float] = []
        statuses: list[int] = []

        async def one() -> None:
            async with session.get(f"{url}?_HLS_msn={msn}&_HLS_part=0") as resp:
                await resp.read()
                answered.append(time.monotonic())
                statuses.append(resp.status)

        async with asyncio.timeout(60):
            await asyncio.gather(*(one() for _ in range(count)))
        return answered, statuses


def blocked(p: h.ProxyProc, count: int) -> dict[str, float]:
    url = f"{p.url}/live/{CHANNEL}.m3u8"
    cpu0, t0 = h.cpu_seconds([p.pid]), time.monotonic()
    answered, statuses = asyncio.run(_blocked(url, count))
    bad = [s for s in statuses if s != 200]
    if bad:
        raise h.BenchError(f"{len(bad)} of {count} blocked reloads failed (HTTP {sorted(set(bad))})")
    return {"blocked_cpu_s": h.cpu_seconds([p.pid]) - cpu0, "blocked_wall_s": max(answered) - t0,
            "release_s": max(answered) - min(answered)}


def _run(ws: h.Workspace, plan: cases.Plan) -> dict[str, float]:
    seconds = 8.0 if plan.quick else 20.0
    row: dict[str, float] = {}
    path = f"/live/{CHANNEL}.m3u8"
    with ws.proxy("asyncio", LL_CONFIG) as p:
        cases.start_live(p, CHANNEL)
        ll = play(p.url, path, options=LL_CATCH_UP, seconds=seconds)
        row |= {"ll_age_s": ll["age_s"], "ll_latency_s": ll["latency_s"]}
        if not plan.quick:
            only = play(p.url, path, options=LL_ONLY, seconds=seconds)
            row |= {"ll_only_age_s": only["age_s"], "ll_only_latency_s": only["latency_s"]}
        row |= blocked(p, BLOCKED)
        tc = play(p.url, path + "?mode=transcode", options=LL_CATCH_UP, seconds=seconds)
        row |= {"transcode_age_s": tc["age_s"], "transcode_latency_s": tc["latency_s"]}
    with ws.proxy("asyncio", PLAIN_CONFIG) as p:
        cases.start_live(p, CHANNEL)
        plain = play(p.url, path, options=NOT_LL, seconds=seconds)
        row |= {"plain_age_s": plain["age_s"], "plain_latency_s": plain["latency_s"]}
    if not plan.quick:
        with ws.proxy("asyncio", LL_FAST_CONFIG) as p:
            cases.start_live(p, CHANNEL)
            fast = play(p.url, path, options=LL_CATCH_UP, seconds=seconds)
            row |= {"ll_fast_age_s": fast["age_s"], "ll_fast_latency_s": fast["latency_s"]}
    return row


def latency(ws: h.Workspace, plan: cases.Plan) -> dict[str, Any]:
    runs = []
    for run in range(1 if plan.quick else min(plan.runs, 3)):
        row = _run(ws, plan)
        runs.append(row)
        cases.log(f"latency run {run + 1}: LL {row['ll_age_s']:.2f} s, plain {row['plain_age_s']:.2f} s, "
                  f"transcode {row['transcode_age_s']:.2f} s; {BLOCKED} blocked: CPU {row['blocked_cpu_s']:.2f} s, "
                  f"released within {1000 * row['release_s']:.0f} ms")
    return {"runs": runs, "median": cases.summarise(runs), "blocked": BLOCKED}
