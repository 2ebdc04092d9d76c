"""The benchmark cases of issue 7. Each takes the shared :class:`Workspace` and a :class:`Plan`
(quick or full) and returns plain data: per-run values, per-run ratios, and their medians.

Ratios are always formed inside one run (the proxy and its baseline measured back to back on the
same set-up) and only then summarised as a median, as anchors.md asks.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import clients
import harness as h

Result = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    quick: bool
    runs: int
    loops: tuple[str, ...]
    #: seconds of one wrk measurement
    seconds: float
    relay_concurrency: tuple[int, ...]
    ttfb_rounds: int
    slow_viewers: int
    fast_viewers: int
    slow_warmup: float
    slow_seconds: float
    start_channels: tuple[int, ...]
    profile: bool = False

    @classmethod
    def make(cls, *, quick: bool, runs: int | None = None, loops: tuple[str, ...] | None = None,
             profile: bool = False) -> Plan:
        if quick:
            return cls(quick=True, runs=runs or 1, loops=loops or ("asyncio",), seconds=1,
                       relay_concurrency=(50,), ttfb_rounds=30, slow_viewers=200, fast_viewers=10,
                       slow_warmup=1.2, slow_seconds=2, start_channels=(7181,), profile=profile)
        return cls(quick=False, runs=runs or 5, loops=loops or ("asyncio", "uvloop"), seconds=4,
                   relay_concurrency=(1, 10, 50, 200), ttfb_rounds=200, slow_viewers=200, fast_viewers=10,
                   slow_warmup=3, slow_seconds=6, start_channels=h.START_CHANNELS, profile=profile)


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of every key over the runs."""
    keys = runs[0].keys() if runs else []
    return {k: h.median([r[k] for r in runs if k in r]) for k in keys}


def log(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


# -- profiling ------------------------------------------------------------------------------------
@contextmanager
def profiled(plan: Plan, pid: int, name: str, seconds: float) -> Iterator[None]:
    """py-spy on ``pid`` (from the client core) while the body runs, when ``--profile`` asked for it."""
    if not plan.profile:
        yield
        return
    out = h.ROOT / "benchmarks" / "results" / f"profile-{name}.txt"
    out.parent.mkdir(exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        raise h.BenchError("--profile needs py-spy in the venv (.venv/bin/pip install py-spy)")
    cmd = h.pinned([str(spy), "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "250",
                    "-f", "raw", "-o", str(out) + ".raw"], h.CLIENT_CORE)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            proc.wait(seconds + 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    raw = Path(str(out) + ".raw")
    if raw.exists():
        out.write_text(profile_summary(raw.read_text()))
        log(f"profile written to {out.relative_to(h.ROOT)}")


def profile_summary(raw: str, top: int = 30) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks (event-loop thread only)."""
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any("concurrent/futures/thread.py" in f for f in frames):
            continue  # idle executor threads, not the event loop
        n = int(count)
        total += n
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    lines = [f"samples on the event-loop thread: {total}", "", "self time:"]
    for f, n in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / max(1, total):5.1f}%  {f}")
    lines += ["", "inclusive time:"]
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top + 15]:
        lines.append(f"  {100 * n / max(1, total):5.1f}%  {f}")
    return "\n".join(lines) + "\n"


# -- helpers --------------------------------------------------------------------------------------
def playlist_paths(base: str, body: bytes) -> list[str]:
    """The request paths (path + query) of a playlist's URI lines."""
    out = []
    for line in body.decode().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            parts = urlsplit(urljoin(base, line))
            out.append(parts.path + ("?" + parts.query if parts.query else ""))
    return out


def write_paths(ws: h.Workspace, name: str, paths: list[str]) -> Path:
    path = ws.dir / f"{name}.paths"
    path.write_text("\n".join(paths) + "\n")
    return path


def start_live(proxy: h.ProxyProc, channel: int = h.CHANNEL) -> tuple[bytes, list[str]]:
    status, body = h.http_get(f"{proxy.url}/live/{channel}.m3u8", timeout=30)
    if status != 200:
        raise h.BenchError(f"the proxy answered the live playlist with HTTP {status}: {body[:200]!r}")
    paths = playlist_paths(proxy.url + "/", body)
    if not paths:
        raise h.BenchError("the proxy's live playlist lists no segment")
    return body, paths


async def _upstream_transcode(ws: h.Workspace, channel: int) -> tuple[str, list[str]]:
    """A transcode of our own at the emulator (through the upstream nginx): its playlist's segment
    paths, which is what an nginx ``proxy_pass`` deployment would hand to players."""
    import aiohttp

    from proxy.config import parse_config
    from proxy.nextpvr.client import NextPVRClient

    cfg = parse_config(h.proxy_config(ws.upstream.port, 0, "asyncio"), source="<bench>", env={})
    async with aiohttp.ClientSession(requote_redirect_url=False) as http:
        client = NextPVRClient(cfg.nextpvr, http)
        session = client.session
        await client.transcode_initiate(session, "channel", channel, cfg.hls.profile)
        async with asyncio.timeout(30):
            while not (await client.transcode_status(session, "channel")).ready:
                await asyncio.sleep(0.05)
        sid = await session.sid()
        url = client.transcode_playlist_url(sid, "channel")
        stream = await client.open_stream(url)
        async with stream:
            body = await stream.read(1 << 20)
    paths = playlist_paths(str(url), body)
    transcode = paths[0].split("/")[2] if paths and paths[0].startswith("/transcode/") else ""
    return transcode, paths


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


@contextmanager
def proxies(ws: h.Workspace, loops: tuple[str, ...], extra: str = "",
            against: bool = False) -> Iterator[dict[str, h.ProxyProc]]:
    """A proxy per event loop; with ``against`` and ``run.py --against SRC``, also one of SRC per loop
    (named ``<loop>-against``), measured in the same runs, for before/after comparisons."""
    with ExitStack() as stack:
        out = {loop: stack.enter_context(ws.proxy(loop, extra)) for loop in loops}
        if against and ws.against_src is not None:
            out |= {f"{loop}-against": stack.enter_context(ws.proxy(loop, extra, src=ws.against_src))
                    for loop in loops}
        yield out


def measured(pids: list[int], url: str, *, connections: int, seconds: float,
             paths: Path | None = None) -> tuple[h.WrkResult, float]:
    """wrk on ``url`` and the CPU seconds ``pids`` (a server's processes, nginx's workers included) used
    meanwhile."""
    result, user, system = measured_split(pids, url, connections=connections, seconds=seconds, paths=paths)
    return result, user + system


def measured_split(pids: list[int], url: str, *, connections: int, seconds: float,
                   paths: Path | None = None) -> tuple[h.WrkResult, float, float]:
    """As :func:`measured`, with user and system CPU seconds apart (system: the kernel's sends)."""
    user0, sys0 = h.cpu_split(pids)
    result = h.run_wrk(url, connections=connections, seconds=seconds, paths=paths)
    user1, sys1 = h.cpu_split(pids)
    return result, user1 - user0, sys1 - sys0


def against_cache(row: dict[str, float], loop: str) -> dict[str, float]:
    """The proxy over nginx-cache, for MB/s, CPU per GB and p99 (issue 15's goal: CPU and p99 at or
    below nginx-cache's, i.e. ratios <= 1)."""
    return {f"{loop}_over_cache": ratio(row[f"{loop}_mb_s"], row["cache_mb_s"]),
            f"{loop}_cpu_over_cache": ratio(row[f"{loop}_cpu_s_per_gb"], row["cache_cpu_s_per_gb"]),
            f"{loop}_p99_over_cache": ratio(row[f"{loop}_p99_ms"], row["cache_p99_ms"])}


def check_wrk(what: str, r: h.WrkResult) -> None:
    if r.requests == 0:
        raise h.BenchError(f"{what}: wrk completed no request")
    if r.errors:
        log(f"WARNING {what}: {r.errors} failed requests")


# -- 1. unique-segment relay ----------------------------------------------------------------------
def relay(ws: h.Workspace, plan: Plan) -> Result:
    """``/recordings/{id}`` (a 4 MB file from the upstream on every request: no cache) against the
    baseline nginx ``proxy_pass`` and the upstream itself, at each concurrency."""
    direct = f"{ws.upstream.url}/live?recording={h.RECORDING}&client=bench"
    nginx = f"{ws.baseline.url}/live?recording={h.RECORDING}&client=bench"
    cached = f"{ws.cache.url}/live?recording={h.RECORDING}&client=bench"
    status, body = h.http_get(cached)  # fills the cache: from here on every request is a hit
    if status != 200 or len(body) != ws.media.recording_bytes:
        raise h.BenchError(f"nginx-cache answered HTTP {status}, {len(body)} bytes")
    out: Result = {"concurrency": {}}
    with proxies(ws, plan.loops) as procs:
        for name, p in procs.items():
            status, body = h.http_get(f"{p.url}/recordings/{h.RECORDING}")
            if status != 200 or len(body) != ws.media.recording_bytes:
                raise h.BenchError(f"proxy ({name}) relayed HTTP {status}, {len(body)} bytes")
        for c in plan.relay_concurrency:
            runs: list[dict[str, float]] = []
            for run in range(plan.runs):
                row: dict[str, float] = {}
                r_direct = h.run_wrk(direct, connections=c, seconds=plan.seconds)
                check_wrk("relay direct", r_direct)
                r_nginx, nginx_cpu = measured(ws.baseline.pids(), nginx, connections=c, seconds=plan.seconds)
                check_wrk("relay nginx", r_nginx)
                r_cache, cache_cpu = measured(ws.cache.pids(), cached, connections=c, seconds=plan.seconds)
                check_wrk("relay nginx-cache", r_cache)
                row |= {"direct_mb_s": r_direct.mb_per_s, "nginx_mb_s": r_nginx.mb_per_s,
                        "nginx_p50_ms": r_nginx.p50_ms, "nginx_p99_ms": r_nginx.p99_ms,
                        "nginx_cpu_s_per_gb": h.per_gb(nginx_cpu, r_nginx.bytes),
                        "direct_p50_ms": r_direct.p50_ms, "direct_p99_ms": r_direct.p99_ms,
                        "cache_mb_s": r_cache.mb_per_s, "cache_p50_ms": r_cache.p50_ms,
                        "cache_p99_ms": r_cache.p99_ms, "cache_cpu_s_per_gb": h.per_gb(cache_cpu, r_cache.bytes)}
                for loop, p in procs.items():
                    cpu0 = h.cpu_seconds([p.pid])
                    up0 = h.cpu_seconds(ws.upstream.worker_pids())
                    with profiled(plan, p.pid, f"relay-c{c}-{loop}", plan.seconds - 0.5) \
                            if run == 0 and c == 50 else _nothing():
                        r = h.run_wrk(f"{p.url}/recordings/{h.RECORDING}", connections=c, seconds=plan.seconds)
                    check_wrk(f"relay proxy {loop}", r)
                    row |= {f"{loop}_mb_s": r.mb_per_s, f"{loop}_p50_ms": r.p50_ms, f"{loop}_p99_ms": r.p99_ms,
                            f"{loop}_max_ms": r.max_ms, f"{loop}_timeouts": float(r.timeouts),
                            f"{loop}_ratio": ratio(r.mb_per_s, r_nginx.mb_per_s),
                            f"{loop}_direct_over_proxy": ratio(r_direct.mb_per_s, r.mb_per_s),
                            f"{loop}_cpu_share": (h.cpu_seconds([p.pid]) - cpu0) / r.seconds,
                            f"{loop}_upstream_cpu_share": (h.cpu_seconds(ws.upstream.worker_pids()) - up0)
                            / r.seconds,
                            f"{loop}_cpu_s_per_gb": h.per_gb(h.cpu_seconds([p.pid]) - cpu0, r.bytes),
                            f"{loop}_upstream_cpu_s_per_gb": h.per_gb(
                                h.cpu_seconds(ws.upstream.worker_pids()) - up0, r.bytes)}
                    row |= against_cache(row, loop)
                runs.append(row)
                log(f"relay c={c} run {run + 1}: nginx {r_nginx.mb_per_s:.0f} MB/s, nginx-cache "
                    f"{r_cache.mb_per_s:.0f} MB/s {row['cache_cpu_s_per_gb']:.2f} s/GB, "
                    + ", ".join(f"{lp} {row[lp + '_mb_s']:.0f} MB/s ({row[lp + '_ratio']:.2f}x)"
                                for lp in procs))
            out["concurrency"][str(c)] = {"runs": runs, "median": summarise(runs)}
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# -- 2. live fan-out ------------------------------------------------------------------------------
def fanout(ws: h.Workspace, plan: Plan, viewers: int = 200) -> Result:
    """200 viewers of one channel fetching the live window's segments in turn, as fast as they can:
    through the proxy (one upstream fetch per segment, the rest from its cache), through nginx
    ``proxy_pass`` without a cache (one upstream fetch per request) and through nginx ``proxy_cache``
    on tmpfs (what an expert would deploy for fan-out: one fetch per segment, sendfile from memory).
    Each server's CPU seconds per GB delivered come from ``/proc``; then the time to first byte of one
    cached segment, the proxy against nginx-cache and the upstream, in turns on kept-alive connections."""
    transcode, base_paths = asyncio.run(_upstream_transcode(ws, h.CHANNEL))
    if not transcode:
        raise h.BenchError(f"unexpected transcode segment paths: {base_paths[:2]}")
    base_file = write_paths(ws, "fanout-nginx", base_paths)
    mark = ws.segment_log_size()
    # nginx-cache's first request of each segment: the upstream fetch its lock collapses the rest into
    for path in base_paths:
        status, body = h.http_get(ws.cache.url + path)
        if status != 200 or not body:
            raise h.BenchError(f"nginx-cache answered {path} with HTTP {status}, {len(body)} bytes")
    runs: list[dict[str, float]] = []
    fetches: dict[str, dict[str, int]] = {}
    cache_fetched = 0
    with proxies(ws, plan.loops, against=True) as procs:
        proxy_files = {}
        segment_urls = {}
        for loop, p in procs.items():
            _body, paths = start_live(p)
            proxy_files[loop] = write_paths(ws, f"fanout-{loop}", paths)
            segment_urls[loop] = p.url + paths[0]
        for run in range(plan.runs):
            row: dict[str, float] = {}
            before = ws.segment_log_size()
            r_nginx, nginx_cpu = measured(ws.baseline.pids(), ws.baseline.url + "/", connections=viewers,
                                          seconds=plan.seconds, paths=base_file)
            check_wrk("fanout nginx", r_nginx)
            nginx_counts = ws.segment_fetches(before)
            r_direct = h.run_wrk(ws.upstream.url + "/", connections=viewers, seconds=plan.seconds, paths=base_file)
            check_wrk("fanout direct", r_direct)
            fetched = ws.cache_fetches()
            r_cache, cache_user, cache_sys = measured_split(ws.cache.pids(), ws.cache.url + "/", connections=viewers,
                                                            seconds=plan.seconds, paths=base_file)
            cache_cpu = cache_user + cache_sys
            check_wrk("fanout nginx-cache", r_cache)
            cache_fetched += ws.cache_fetches() - fetched
            row |= {"nginx_mb_s": r_nginx.mb_per_s, "direct_mb_s": r_direct.mb_per_s,
                    "nginx_p99_ms": r_nginx.p99_ms, "nginx_cpu_s_per_gb": h.per_gb(nginx_cpu, r_nginx.bytes),
                    "nginx_fetches_per_request": ratio(sum(nginx_counts.values()), r_nginx.requests),
                    "nginx_fetches_per_segment": ratio(sum(nginx_counts.values()), max(1, len(nginx_counts))),
                    "cache_mb_s": r_cache.mb_per_s, "cache_p50_ms": r_cache.p50_ms, "cache_p99_ms": r_cache.p99_ms,
                    "cache_cpu_s_per_gb": h.per_gb(cache_cpu, r_cache.bytes),
                    "cache_user_s_per_gb": h.per_gb(cache_user, r_cache.bytes)}
            for loop, p in procs.items():
                user0, sys0 = h.cpu_split([p.pid])
                with profiled(plan, p.pid, f"fanout-{loop}", plan.seconds - 0.5) if run == 0 else _nothing():
                    r = h.run_wrk(p.url + "/", connections=viewers, seconds=plan.seconds, paths=proxy_files[loop])
                user1, sys1 = h.cpu_split([p.pid])
                cpu = user1 - user0 + sys1 - sys0
                check_wrk(f"fanout proxy {loop}", r)
                row |= {f"{loop}_mb_s": r.mb_per_s, f"{loop}_p50_ms": r.p50_ms, f"{loop}_p99_ms": r.p99_ms,
                        f"{loop}_ratio": ratio(r.mb_per_s, r_nginx.mb_per_s),
                        f"{loop}_cpu_share": cpu / r.seconds, f"{loop}_cpu_s_per_gb": h.per_gb(cpu, r.bytes),
                        f"{loop}_user_s_per_gb": h.per_gb(user1 - user0, r.bytes)}
                row |= against_cache(row, loop)
            # time to first byte of a cached segment (all of them were served many times above)
            urls = {"direct": ws.upstream.url + base_paths[0], "cache": ws.cache.url + base_paths[0],
                    **segment_urls}
            values = clients.ttfb_rounds(urls, plan.ttfb_rounds)
            row |= {f"{name}_ttfb_p50_ms": h.median(v) for name, v in values.items()}
            for loop in procs:
                row[f"{loop}_ttfb_over_cache"] = ratio(row[f"{loop}_ttfb_p50_ms"], row["cache_ttfb_p50_ms"])
            runs.append(row)
            log(f"fanout run {run + 1}: nginx {r_nginx.mb_per_s:.0f} MB/s, direct {r_direct.mb_per_s:.0f} MB/s, "
                f"nginx-cache {r_cache.mb_per_s:.0f} MB/s {row['cache_cpu_s_per_gb']:.2f} s/GB "
                f"(user {row['cache_user_s_per_gb']:.2f}) p99 "
                f"{r_cache.p99_ms:.0f} ms TTFB {row['cache_ttfb_p50_ms']:.2f} ms, "
                + ", ".join(f"{lp} {row[lp + '_mb_s']:.0f} MB/s ({row[lp + '_ratio']:.2f}x nginx, "
                            f"{row[lp + '_over_cache']:.2f}x cache) {row[lp + '_cpu_s_per_gb']:.2f} s/GB "
                            f"(user {row[lp + '_user_s_per_gb']:.2f}) "
                            f"p99 {row[lp + '_p99_ms']:.0f} ms TTFB {row[lp + '_ttfb_p50_ms']:.2f} ms"
                            for lp in procs))
        # every segment the proxies fetched since they started, by the upstream's own log
        counts = ws.segment_fetches(mark)
        for path, n in counts.items():
            if path.split("/")[2] == transcode:
                continue  # the baselines' own transcode
            key = path.split("/")[2]
            fetches.setdefault(key, {})[path] = n
    per_proxy = [{"segments": len(v), "max": max(v.values()), "min": min(v.values()),
                  "total": sum(v.values())} for v in fetches.values()]
    if not per_proxy:
        raise h.BenchError("no proxy segment fetch reached the upstream log")
    return {"runs": runs, "median": summarise(runs), "proxy_fetches": per_proxy,
            "max_fetches_per_segment": max(p["max"] for p in per_proxy),
            "min_fetches_per_segment": min(p["min"] for p in per_proxy),
            "segments_fetched": sum(p["segments"] for p in per_proxy),
            # nginx-cache's upstream fetches while it was measured (0: every request a hit after the fill)
            "cache_fetches_during_runs": cache_fetched,
            "cache_in_memory": ws.cache_in_memory}


# -- 3. time to first byte ------------------------------------------------------------------------
def ttfb(ws: h.Workspace, plan: Plan) -> Result:
    """A 4 MB recording, one request at a time on a kept-alive connection: the first response byte."""
    runs: list[dict[str, float]] = []
    with proxies(ws, plan.loops) as procs:
        urls = {"direct": f"{ws.upstream.url}/live?recording={h.RECORDING}&client=bench",
                "nginx": f"{ws.baseline.url}/live?recording={h.RECORDING}&client=bench"}
        for loop, p in procs.items():
            urls[loop] = f"{p.url}/recordings/{h.RECORDING}"
        for run in range(plan.runs):
            values = clients.ttfb_rounds(urls, plan.ttfb_rounds)
            row = {f"{name}_p50_ms": h.median(v) for name, v in values.items()}
            row |= {f"{name}_p99_ms": h.percentile(v, 99) for name, v in values.items()}
            for name in ["nginx", *procs]:
                row[f"{name}_added_ms"] = row[f"{name}_p50_ms"] - row["direct_p50_ms"]
            runs.append(row)
            log(f"ttfb run {run + 1}: " + ", ".join(f"{n} {row[n + '_p50_ms']:.2f} ms" for n in urls))
    return {"runs": runs, "median": summarise(runs)}


# -- 4. playlist request rate ---------------------------------------------------------------------
def playlist(ws: h.Workspace, plan: Plan, connections: int = 50) -> Result:
    """The cached live playlist at c=50, and nginx serving the same bytes as a static file."""
    runs: list[dict[str, float]] = []
    with proxies(ws, plan.loops) as procs:
        static_url = ""
        size = 0
        for p in procs.values():
            body, _paths = start_live(p)
            static_url = h.write_static(ws, "live.m3u8", body)
            size = len(body)
        for run in range(plan.runs):
            r_nginx = h.run_wrk(static_url, connections=connections, seconds=plan.seconds)
            check_wrk("playlist nginx", r_nginx)
            row: dict[str, float] = {"nginx_req_s": r_nginx.req_per_s, "bytes": float(size)}
            for loop, p in procs.items():
                with profiled(plan, p.pid, f"playlist-{loop}", plan.seconds - 0.5) if run == 0 else _nothing():
                    r = h.run_wrk(f"{p.url}/live/{h.CHANNEL}.m3u8", connections=connections, seconds=plan.seconds)
                check_wrk(f"playlist proxy {loop}", r)
                row |= {f"{loop}_req_s": r.req_per_s, f"{loop}_p50_ms": r.p50_ms, f"{loop}_p99_ms": r.p99_ms,
                        f"{loop}_ratio": ratio(r.req_per_s, r_nginx.req_per_s),
                        f"{loop}_us_per_request": 1e6 / r.req_per_s if r.req_per_s else float("nan")}
            runs.append(row)
            log(f"playlist run {run + 1}: nginx {r_nginx.req_per_s:.0f} req/s, "
                + ", ".join(f"{lp} {row[lp + '_req_s']:.0f} req/s ({row[lp + '_ratio']:.3f}x)" for lp in procs))
    return {"runs": runs, "median": summarise(runs)}


# -- 5. slow viewers ------------------------------------------------------------------------------
@contextmanager
def _client(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A client process on the client core; killed on the way out if it is still running."""
    cmd = h.pinned([sys.executable, str(h.HERE / "clients.py"), *args], h.CLIENT_CORE)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _client_result(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise h.BenchError("a client process overran its deadline") from None
    for line in out.decode().splitlines():
        if line.startswith("CLIENT_JSON "):
            result: dict[str, Any] = json.loads(line[len("CLIENT_JSON "):])
            return result
    raise h.BenchError(f"client printed no result: {err.decode()[-1500:]}")


def _slow_phase(ws: h.Workspace, plan: Plan, loop: str, mode: str, with_slow: bool) -> dict[str, Any]:
    """One fresh proxy; optionally 200 slow viewers first, then the fast viewers' measurement."""
    with ws.proxy(loop) as p, ExitStack() as procs:
        idle_mb = p.rss_mb()
        paths_file: Path | None = None
        if mode == "hls":
            _body, paths = start_live(p)
            paths_file = write_paths(ws, f"slow-{loop}", paths)
        ts_url = f"{p.url}/live/{h.CHANNEL}.ts"
        slow_proc = None
        total = plan.slow_warmup + plan.slow_seconds + 1.0
        fast_seconds = plan.slow_seconds + (1.0 if mode == "ts" else 0.0)
        if with_slow:
            args = ["slow", "--mode", mode, "--count", str(plan.slow_viewers), "--seconds", str(total)]
            args += ["--url", ts_url] if mode == "ts" else ["--url", p.url + "/", "--paths", str(paths_file)]
            slow_proc = procs.enter_context(_client(args))
            time.sleep(plan.slow_warmup)
        if mode == "hls":
            assert paths_file is not None
            r = h.run_wrk(p.url + "/", connections=plan.fast_viewers, seconds=plan.slow_seconds, paths=paths_file)
            check_wrk(f"slow/{mode} fast viewers", r)
            fast = {"mb_s": r.mb_per_s, "p99_ms": r.p99_ms, "errors": r.errors}
        else:
            fast_proc = procs.enter_context(_client(["fast-ts", "--url", ts_url, "--count", str(plan.fast_viewers),
                                                     "--seconds", str(fast_seconds), "--warmup", "1"]))
            fr = _client_result(fast_proc, fast_seconds)
            fast = {"mb_s": float(fr["mb_per_s"]), "min_viewer_mb_s": float(fr["min_viewer_mb_per_s"]),
                    "errors": fr["errors"]}
        slow = _client_result(slow_proc, total) if slow_proc is not None else None
        return {"hwm_mb": p.hwm_mb(), "idle_mb": idle_mb, "fast": fast, "slow": slow}


def slow(ws: h.Workspace, plan: Plan) -> Result:
    """200 viewers at 1 Mbit/s (MSS 1448) plus 10 fast ones, live TS and HLS: the proxy's peak RSS
    and the fast viewers' throughput against a run with the fast viewers alone."""
    out: Result = {}
    for mode in ("ts", "hls"):
        for loop in plan.loops:
            runs: list[dict[str, float]] = []
            slow_info: list[dict[str, Any]] = []
            for run in range(plan.runs):
                alone = _slow_phase(ws, plan, loop, mode, with_slow=False)
                loaded = _slow_phase(ws, plan, loop, mode, with_slow=True)
                assert loaded["slow"] is not None
                slow_info.append(loaded["slow"])
                row = {"hwm_mb": loaded["hwm_mb"], "alone_hwm_mb": alone["hwm_mb"], "idle_mb": loaded["idle_mb"],
                       "fast_mb_s": loaded["fast"]["mb_s"], "alone_fast_mb_s": alone["fast"]["mb_s"],
                       "fast_ratio": ratio(loaded["fast"]["mb_s"], alone["fast"]["mb_s"]),
                       "slow_mbit_per_viewer": float(loaded["slow"]["mbit_per_viewer"]),
                       "slow_disconnects": float(loaded["slow"]["disconnects"]),
                       "slow_errors": float(loaded["slow"]["errors"])}
                runs.append(row)
                log(f"slow {mode}/{loop} run {run + 1}: peak RSS {row['hwm_mb']:.0f} MB "
                    f"(alone {row['alone_hwm_mb']:.0f} MB), fast {row['fast_mb_s']:.1f} vs "
                    f"{row['alone_fast_mb_s']:.1f} MB/s ({row['fast_ratio']:.2f}x), slow viewers "
                    f"{row['slow_mbit_per_viewer']:.2f} Mbit/s each, {int(row['slow_disconnects'])} disconnects, "
                    f"{int(row['slow_errors'])} errors")
            out[f"{mode}/{loop}"] = {"runs": runs, "median": summarise(runs), "slow_clients": slow_info}
    return out


# -- 6. channel start -----------------------------------------------------------------------------
def start(ws: h.Workspace, plan: Plan) -> Result:
    """Time from the transcoder being ready (the emulator's ``ready_at``) to the player having the
    first playlist, per channel start (the proxy polls the transcoder's status)."""
    out: Result = {}
    for loop in plan.loops:
        runs: list[dict[str, float]] = []
        samples: list[dict[str, float]] = []
        for run in range(plan.runs):
            with ws.proxy(loop) as p:
                client_ms: list[float] = []
                upstream_ms: list[float] = []
                total_ms: list[float] = []
                for channel in plan.start_channels:
                    sent = time.monotonic()
                    status, _body = h.http_get(f"{p.url}/live/{channel}.m3u8", timeout=60)
                    got = time.monotonic()
                    if status != 200:
                        raise h.BenchError(f"channel {channel}: HTTP {status}")
                    mine = [t for t in ws.emulator_state()["transcodes"]
                            if t["channel"] == channel and t["kind"] == "channel" and t["started_at"] >= sent]
                    if not mine:
                        raise h.BenchError(f"channel {channel}: the emulator saw no transcode start")
                    t = mine[-1]
                    client_ms.append((got - t["ready_at"]) * 1e3)
                    upstream_ms.append((t["first_playlist_at"] - t["ready_at"]) * 1e3)
                    total_ms.append((got - sent) * 1e3)
                    samples.append({"channel": channel, "client_ms": client_ms[-1], "upstream_ms": upstream_ms[-1],
                                    "total_ms": total_ms[-1]})
            row = {"client_ms": h.median(client_ms), "upstream_ms": h.median(upstream_ms),
                   "total_ms": h.median(total_ms), "worst_client_ms": max(client_ms)}
            runs.append(row)
            log(f"start {loop} run {run + 1}: first playlist {row['client_ms']:.0f} ms after ready "
                f"(upstream fetch {row['upstream_ms']:.0f} ms after ready, total {row['total_ms']:.0f} ms)")
        out[loop] = {"runs": runs, "median": summarise(runs),
                     "all_client_ms_p50": h.median([s["client_ms"] for s in samples]),
                     "all_client_ms_max": max(s["client_ms"] for s in samples), "samples": samples}
    return out


# -- 7. the playlist rewriter (benchmarks/bench_rewrite.py) ---------------------------------------
def rewrite(ws: h.Workspace | None, plan: Plan) -> Result:
    import bench_rewrite

    result = bench_rewrite.run(plan.quick)
    print(bench_rewrite.report(result), file=sys.stderr)
    return {"result": result, "chunk_limit_ms": bench_rewrite.CHUNK_LIMIT_MS}


CASES: dict[str, Callable[[h.Workspace, Plan], Result]] = {
    "relay": relay,
    "fanout": fanout,
    "ttfb": ttfb,
    "playlist": playlist,
    "slow": slow,
    "start": start,
}
