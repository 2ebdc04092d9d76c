"""Run the benchmarks of issue 7 and print every result as a ratio measured in the same run.

    .venv/bin/python benchmarks/run.py                 # everything, medians of 5 runs (minutes)
    .venv/bin/python benchmarks/run.py --quick         # smoke run (CI): one short run of each case
    .venv/bin/python benchmarks/run.py relay ttfb      # only these cases
    .venv/bin/python benchmarks/run.py --profile relay # py-spy the proxy (results/profile-*.txt)

Cases: relay, fanout, ttfb, playlist, slow, start, remux, latency, rewrite (see benchmarks/README.md).

Each target is printed with PASS or MISS; timing targets never fail the command, because a
shared machine is noisy. The exit status is 1 only when the machinery broke: a tool is missing,
a process did not start, a client got no answer, the time limit was hit. The results go to
``benchmarks/results/latest.json`` (not committed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:  # a clean clone: the package may not be installed
        sys.path.insert(0, path)

import case_latency  # noqa: E402
import case_remux  # noqa: E402
import cases  # noqa: E402
import harness as h  # noqa: E402

ORDER = ("relay", "fanout", "ttfb", "playlist", "slow", "start", "remux", "latency", "rewrite")
CASES = {**cases.CASES, "remux": case_remux.remux, "latency": case_latency.latency}
#: the whole run is stopped (and cleaned up) after this long
TIME_LIMIT = {True: 210, False: 3 * 3600}


@dataclass(frozen=True)
class Row:
    case: str
    measure: str
    value: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: report only


def _f(x: float, digits: int = 0) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:,.{digits}f}"


def rows_for(name: str, res: dict[str, Any], plan: cases.Plan) -> list[Row]:
    rows: list[Row] = []
    if name == "relay":
        for c, data in res["concurrency"].items():
            m = data["median"]
            for loop in plan.loops:
                target = ">= 0.6x nginx" if c == "50" else "report"
                met = m[f"{loop}_ratio"] >= 0.6 if c == "50" else None
                rows.append(Row("relay (recordings, 4 MB, cache miss)", f"c={c} MB/s, {loop}",
                                f"{_f(m[loop + '_mb_s'])} MB/s, p50 {_f(m[loop + '_p50_ms'])} ms, "
                                f"p99 {_f(m[loop + '_p99_ms'])} ms",
                                f"nginx {_f(m['nginx_mb_s'])} MB/s, p50 {_f(m['nginx_p50_ms'])} ms, "
                                f"p99 {_f(m['nginx_p99_ms'])} ms",
                                f"{m[loop + '_ratio']:.2f}x", target, met))
                rows.append(Row("relay: upstream not the bottleneck", f"c={c} direct / proxy ({loop})",
                                f"direct {_f(m['direct_mb_s'])} MB/s", f"proxy {_f(m[loop + '_mb_s'])} MB/s",
                                f"{m[loop + '_direct_over_proxy']:.2f}x", ">= 2x", m[loop + "_direct_over_proxy"] >= 2))
                rows.append(Row("relay: upstream not the bottleneck", f"c={c} core 0 during the proxy run ({loop})",
                                f"proxy {100 * m[loop + '_cpu_share']:.0f}% of the core",
                                f"upstream nginx {100 * m[loop + '_upstream_cpu_share']:.0f}%", "", "report", None))
                # nginx-cache serves the recording from its cache (one upstream fetch ever); the proxy relays
                # it from the upstream every time: a report, not a target (the targets are the fan-out's)
                rows.append(Row("relay vs nginx-cache (tmpfs, sendfile)", f"c={c} MB/s, p99, {loop}",
                                f"{_f(m[loop + '_mb_s'])} MB/s, p99 {_f(m[loop + '_p99_ms'])} ms",
                                f"nginx-cache {_f(m['cache_mb_s'])} MB/s, p99 {_f(m['cache_p99_ms'])} ms",
                                f"{m[loop + '_over_cache']:.2f}x", "report", None))
                rows.append(Row("relay vs nginx-cache (tmpfs, sendfile)", f"c={c} server CPU s/GB, {loop}",
                                f"proxy {m[loop + '_cpu_s_per_gb']:.2f} s/GB (+ upstream "
                                f"{m[loop + '_upstream_cpu_s_per_gb']:.2f})",
                                f"nginx-cache {m['cache_cpu_s_per_gb']:.2f}; proxy_pass {m['nginx_cpu_s_per_gb']:.2f}",
                                f"{m[loop + '_cpu_over_cache']:.2f}x", "report", None))
    elif name == "fanout":
        m = res["median"]
        for loop in plan.loops:
            rows.append(Row("live fan-out, 200 viewers", f"MB/s delivered, {loop}", f"{_f(m[loop + '_mb_s'])} MB/s",
                            f"nginx (no cache) {_f(m['nginx_mb_s'])} MB/s", f"{m[loop + '_ratio']:.2f}x",
                            ">= 1.5x nginx", m[loop + "_ratio"] >= 1.5))
        tmpfs = "tmpfs" if res.get("cache_in_memory") else "NOT tmpfs"
        for loop in [*plan.loops, *(f"{lp}-against" for lp in plan.loops if f"{lp}_mb_s" in m
                                    and f"{lp}-against_mb_s" in m)]:
            label = f"fan-out vs nginx-cache ({tmpfs}, sendfile)"
            rows.append(Row(label, f"MB/s delivered, {loop}", f"{_f(m[loop + '_mb_s'])} MB/s",
                            f"nginx-cache {_f(m['cache_mb_s'])} MB/s", f"{m[loop + '_over_cache']:.2f}x",
                            "report", None))
            rows.append(Row(label, f"server CPU s/GB delivered, {loop}", f"{m[loop + '_cpu_s_per_gb']:.2f} s/GB",
                            f"nginx-cache {m['cache_cpu_s_per_gb']:.2f}; proxy_pass {m['nginx_cpu_s_per_gb']:.2f}",
                            f"{m[loop + '_cpu_over_cache']:.2f}x", "<= nginx-cache", m[loop + "_cpu_over_cache"] <= 1))
            rows.append(Row(label, f"p99 latency (whole segment), {loop}", f"{_f(m[loop + '_p99_ms'])} ms",
                            f"nginx-cache {_f(m['cache_p99_ms'])} ms; proxy_pass {_f(m['nginx_p99_ms'])} ms",
                            f"{m[loop + '_p99_over_cache']:.2f}x", "<= nginx-cache", m[loop + "_p99_over_cache"] <= 1))
            rows.append(Row(label, f"TTFB p50, cached segment, {loop}", f"{m[loop + '_ttfb_p50_ms']:.2f} ms",
                            f"nginx-cache {m['cache_ttfb_p50_ms']:.2f} ms; direct {m['direct_ttfb_p50_ms']:.2f} ms",
                            f"{m[loop + '_ttfb_over_cache']:.2f}x", "<= nginx-cache",
                            m[loop + "_ttfb_over_cache"] <= 1))
        rows.append(Row(f"fan-out vs nginx-cache ({tmpfs}, sendfile)", "nginx-cache upstream fetches while measured",
                        str(res["cache_fetches_during_runs"]), "after one fetch per segment", "", "0",
                        res["cache_fetches_during_runs"] == 0))
        one = res["max_fetches_per_segment"] == 1 and res["min_fetches_per_segment"] == 1
        rows.append(Row("live fan-out, 200 viewers", "upstream fetches per segment (upstream's log)",
                        f"{res['min_fetches_per_segment']}..{res['max_fetches_per_segment']} "
                        f"over {res['segments_fetched']} segments",
                        f"nginx {_f(m['nginx_fetches_per_segment'], 1)} per segment", "", "exactly 1", one))
    elif name == "ttfb":
        m = res["median"]
        for loop in plan.loops:
            rows.append(Row("time to first byte, 4 MB", f"p50 added over direct, {loop}",
                            f"{m[loop + '_added_ms']:.2f} ms (p50 {m[loop + '_p50_ms']:.2f} ms)",
                            f"direct p50 {m['direct_p50_ms']:.2f} ms; nginx adds {m['nginx_added_ms']:.2f} ms",
                            f"{m[loop + '_p50_ms'] / m['direct_p50_ms']:.1f}x direct", "<= 1.5 ms",
                            m[loop + "_added_ms"] <= 1.5))
    elif name == "playlist":
        m = res["median"]
        for loop in plan.loops:
            rows.append(Row("playlist rate (cached live), c=50", f"req/s, {loop}",
                            f"{_f(m[loop + '_req_s'])} req/s ({_f(m[loop + '_us_per_request'])} us each)",
                            f"nginx static {_f(m['nginx_req_s'])} req/s", f"{m[loop + '_ratio']:.3f}x",
                            "report", None))
    elif name == "slow":
        for key, data in res.items():
            m = data["median"]
            mode, loop = key.split("/")
            label = f"200 slow + 10 fast viewers, {mode.upper()}"
            rows.append(Row(label, f"peak RSS (VmHWM), {loop}", f"{_f(m['hwm_mb'])} MB",
                            f"fast viewers alone {_f(m['alone_hwm_mb'])} MB", f"{m['hwm_mb'] / m['alone_hwm_mb']:.2f}x",
                            "<= 100 MB", m["hwm_mb"] <= 100))
            rows.append(Row(label, f"fast viewers' MB/s, {loop}", f"{_f(m['fast_mb_s'], 1)} MB/s",
                            f"without slow viewers {_f(m['alone_fast_mb_s'], 1)} MB/s", f"{m['fast_ratio']:.2f}x",
                            ">= 0.9x (within 10%)", m["fast_ratio"] >= 0.9))
    elif name == "start":
        for loop, data in res.items():
            m = data["median"]
            rows.append(Row("channel start", f"first playlist - transcoder ready, {loop}",
                            f"{_f(m['client_ms'])} ms at the player (p50); worst {_f(data['all_client_ms_max'])} ms",
                            f"proxy's upstream fetch {_f(m['upstream_ms'])} ms after ready; "
                            f"whole start {_f(m['total_ms'])} ms", "", "<= 150 ms", m["client_ms"] <= 150))
    elif name == "remux":
        m = res["median"]
        label = "remux (5 Mbit/s channel, GOP 2 s)"
        rows.append(Row(label, f"proxy CPU, one packaged channel ({res['cpu_seconds']:.0f} s)",
                        f"{100 * m['cpu_share']:.1f}% of a core", f"packaging alone {100 * m['packaging_share']:.2f}%",
                        "", "<= 3%", m["cpu_share"] <= 0.03))
        rows.append(Row(label, "first upstream byte -> first listed segment", f"{m['first_segment_s']:.2f} s",
                        f"first playlist at the client {m['first_playlist_s']:.2f} s", "", "<= GOP + 0.1 s (2.1 s)",
                        m["first_segment_s"] <= 2.1))
        rows.append(Row(label, "200 HLS viewers, MB/s", f"{_f(m['viewers_mb_s'])} MB/s, p99 "
                        f"{_f(m['viewers_p99_ms'])} ms, peak RSS {_f(m['hwm_mb'])} MB",
                        f"transcode fan-out {_f(m['transcode_mb_s'])} MB/s, p99 {_f(m['transcode_p99_ms'])} ms, "
                        f"peak RSS {_f(m['transcode_hwm_mb'])} MB",
                        f"{m['viewers_mb_s'] / m['transcode_mb_s']:.2f}x", "report", None))
        for kind, base in (("remux", "m3u8"), ("transcode", "m3u8?mode=transcode"), ("ts", "ts")):
            rows.append(Row(label, f"zap to first frame, {kind}",
                            f"running {m[f'zap_{kind}_running_s']:.2f} s, cold {m[f'zap_{kind}_cold_s']:.2f} s",
                            f"ffmpeg on a local file {m['floor_s']:.2f} s", base,
                            "running <= 0.5 s" if kind == "remux" else "report",
                            m["zap_remux_running_s"] <= 0.5 if kind == "remux" else None))
    elif name == "latency":
        m = res["median"]
        label = "latency behind live (hls.js, Chromium)"
        rows.append(Row(label, "LL-HLS remux (catch-up 1.5x): wall - playingDate", f"{m['ll_age_s']:.2f} s",
                        f"plain remux {m['plain_age_s']:.2f} s; transcode {_f(m['transcode_age_s'], 2)} s",
                        f"hls.latency {m['ll_latency_s']:.2f} s", "<= 1.0 s", m["ll_age_s"] <= 1.0))
        rows.append(Row(label, "plain remux / transcode: hls.latency (p50)", f"{m['plain_latency_s']:.2f} s",
                        f"transcode {m['transcode_latency_s']:.2f} s", "", "report", None))
        if "ll_only_age_s" in m:
            rows.append(Row(label, "LL-HLS, lowLatencyMode alone: wall - playingDate", f"{m['ll_only_age_s']:.2f} s",
                            f"hls.latency {m['ll_only_latency_s']:.2f} s", "", "report", None))
        if "ll_fast_age_s" in m:
            rows.append(Row(label, "LL-HLS, part_duration 0.2 s: wall - playingDate", f"{m['ll_fast_age_s']:.2f} s",
                            f"hls.latency {m['ll_fast_latency_s']:.2f} s", "", "report", None))
        rows.append(Row(label, f"{res['blocked']} blocked playlist reloads, one channel",
                        f"proxy CPU {m['blocked_cpu_s']:.2f} s, released within {1000 * m['release_s']:.0f} ms",
                        f"first request to last answer {m['blocked_wall_s']:.2f} s", "", "report", None))
    elif name == "rewrite":
        r = res["result"]
        worst = r["longest_chunk_ms"]
        big = [row for row in r["rows"] if row["playlist"] == "vod_10000seg"]
        ratio_text = f"m3u8+map / rewrite {big[0]['ratio_map']:.1f}x" if big else ""
        rows.append(Row("playlist rewrite (bench_rewrite.py)", "longest iter_rewrite chunk, 10,000 segments",
                        f"{worst:.1f} ms", f"rewrite {big[0]['rewrite_ms']:.1f} ms / m3u8 {big[0]['m3u8_ms']:.1f} ms"
                        if big else "", ratio_text, f"< {res['chunk_limit_ms']:.0f} ms", worst < res["chunk_limit_ms"]))
    return rows


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'case':<38} {'measure':<44} {'value':<52} {'baseline':<58} {'ratio':<14} {'target':<20} result")
    for r in rows:
        verdict = "report" if r.met is None else ("PASS" if r.met else "MISS")
        print(f"{r.case:<38} {r.measure:<44} {r.value:<52} {r.baseline:<58} {r.ratio:<14} {r.target:<20} {verdict}")


def markdown(rows: list[Row]) -> str:
    out = ["| case | measure | value | baseline | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "report" if r.met is None else ("yes" if r.met else "**no**")
        out.append(f"| {r.case} | {r.measure} | {r.value} | {r.baseline} | {r.ratio} | {r.target} | {verdict} |")
    return "\n".join(out)


class _TimeLimit(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _TimeLimit("the benchmark run hit its time limit")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every cleanup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("cases", nargs="*", metavar="case", help=f"any of {', '.join(ORDER)} (default: all)")
    p.add_argument("--quick", action="store_true", help="smoke run: one short run of each case (CI)")
    p.add_argument("--runs", type=int, help="runs per measurement (default 5, quick 1)")
    p.add_argument("--loops", help="event loops, comma-separated (default asyncio,uvloop; quick asyncio)")
    p.add_argument("--concurrency", help="relay concurrencies, comma-separated (default 1,10,50,200; quick 50)")
    p.add_argument("--profile", action="store_true", help="py-spy the proxy during one run of each case")
    p.add_argument("--proxy-src", default=str(ROOT),
                   help="the proxy to measure: a directory holding the proxy package, or git:REV for a "
                        "commit of this repository (e.g. git:HEAD, without uncommitted changes); default: "
                        "this checkout as it is")
    p.add_argument("--against", metavar="SRC",
                   help="fan-out only: also measure this proxy source (as --proxy-src) in the same runs, "
                        "rows named <loop>-against (before/after comparisons with ratios from one run)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "latest.json", help="where to write the results")
    args = p.parse_args(argv)
    unknown = [c for c in args.cases if c not in ORDER]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    selected = [c for c in ORDER if c in args.cases] if args.cases else list(ORDER)
    loops = tuple(args.loops.split(",")) if args.loops else None
    plan = cases.Plan.make(quick=args.quick, runs=args.runs, loops=loops, profile=args.profile)
    if args.concurrency:
        plan = dataclasses.replace(plan, relay_concurrency=tuple(int(c) for c in args.concurrency.split(",")))

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT[args.quick])
    h.pin_self()
    started = time.monotonic()
    info = h.machine() | {"proxy": h.describe_source(args.proxy_src)}
    if args.against:
        info["against"] = h.describe_source(args.against)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), file=sys.stderr)
    print(f"plan: {'quick' if plan.quick else 'full'}, {plan.runs} run(s), loops {', '.join(plan.loops)}, "
          f"cases {', '.join(selected)}", file=sys.stderr)
    results: dict[str, Any] = {"machine": info, "plan": plan.__dict__, "cases": {}}
    rows: list[Row] = []
    broken = False
    try:
        needs_env = [c for c in selected if c != "rewrite"]
        if needs_env:
            t0 = time.monotonic()
            with h.workspace(keep=args.keep, proxy_src=args.proxy_src, against=args.against) as ws:
                print(f"set-up {time.monotonic() - t0:.1f}s in {ws.dir}: media {ws.media.segment_bytes} B "
                      f"segments, {ws.media.recording_bytes} B recording, channel at "
                      f"{ws.media.channel_rate * 8 / 1e6:.1f} Mbit/s", file=sys.stderr)
                for name in needs_env:
                    t0 = time.monotonic()
                    print(f"== {name}", file=sys.stderr, flush=True)
                    fn: Callable[[h.Workspace, cases.Plan], dict[str, Any]] = CASES[name]
                    res = fn(ws, plan)
                    results["cases"][name] = res
                    results.setdefault("case_seconds", {})[name] = time.monotonic() - t0
                    rows += rows_for(name, res, plan)
        if "rewrite" in selected:
            print("== rewrite", file=sys.stderr, flush=True)
            res = cases.rewrite(None, plan)
            results["cases"]["rewrite"] = res
            rows += rows_for("rewrite", res, plan)
    except (h.BenchError, _TimeLimit, OSError) as exc:
        broken = True
        print(f"\nBENCHMARK MACHINERY FAILED: {exc}", file=sys.stderr)
        traceback.print_exc()
    finally:
        signal.alarm(0)
    results["seconds"] = time.monotonic() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print_table(rows)
    print("\n" + markdown(rows))
    print(f"\n{len([r for r in rows if r.met])} met, {len([r for r in rows if r.met is False])} missed, "
          f"{results['seconds']:.0f}s; results in {args.json}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
