"""Timeshift memory: the proxy's RSS does not grow with the window (issue 13).

    .venv/bin/python benchmarks/bench_timeshift.py [--speed 10] [--minutes 10] [--keep]

A fresh proxy process (``serve``, ``hls.mode: remux``, ``hls.timeshift: 10m``) packages the benchmark's
5 Mbit/s H.264 channel (``harness.make_media``) from the upstream nginx, which sends it ``--speed``
times faster than its bitrate (nginx ``limit_rate``), so ten minutes of stream arrive in about one
minute of wall clock: the segments, the files and the records are the same as in real time, only
their program-date-times are closer together. A client keeps the channel watched (a playlist
request every 0.5 s). The proxy's VmRSS is read when the listed window first spans 1 minute of
stream and again at 10 minutes; the difference must stay under 20 MB. Also printed: the disk bytes
of the window, the playlist's size, and the peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
if str(ROOT) not in sys.path:  # run as a script from a clean clone: the package is not installed
    sys.path.insert(0, str(ROOT))

import harness as h  # noqa: E402

CHANNEL = 7181
_EXTINF = re.compile(rb"^#EXTINF:([0-9.]+),", re.M)


def listed_seconds(body: bytes) -> float:
    return sum(float(x) for x in _EXTINF.findall(body))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.ts"))


def run(speed: float, minutes: float, keep: bool) -> int:
    loops = int(minutes * 60 / 20) + 6  # the channel must outlast the measurement (then it ends)
    with h.workspace(keep=keep, live_loops=loops, live_speed=speed) as ws:
        shift_dir = ws.dir / "timeshift"
        extra = (f"hls:\n  mode: remux\n  timeshift: {int(minutes * 60) + 60}\n  timeshift_max_bytes: 8GiB\n"
                 f"  timeshift_total_bytes: 8GiB\n  timeshift_dir: '{shift_dir}'\n")
        with ws.proxy("asyncio", extra) as p:
            url = f"{p.url}/live/{CHANNEL}.m3u8"
            marks = {1.0: 0.0, minutes: 0.0}
            started = time.monotonic()
            body = b""
            deadline = started + minutes * 60 / speed * 3 + 120
            while time.monotonic() < deadline and not all(marks.values()):
                status, body = h.http_get(url, timeout=30)
                if status != 200:
                    raise h.BenchError(f"playlist: HTTP {status} {body[:200]!r}")
                span = listed_seconds(body) / 60
                for mark in marks:
                    if not marks[mark] and span >= mark:
                        marks[mark] = p.rss_mb()
                        print(f"window {span:5.2f} min after {time.monotonic() - started:5.1f} s: "
                              f"RSS {marks[mark]:.1f} MB, disk {folder_bytes(shift_dir) / 1e6:.0f} MB, "
                              f"playlist {len(body) / 1e3:.0f} kB", flush=True)
                time.sleep(0.5)
            if not all(marks.values()):
                raise h.BenchError(f"the window did not reach {minutes} minutes in time")
            growth = marks[minutes] - marks[1.0]
            print(f"RSS growth from 1 to {minutes:g} minutes of window: {growth:+.1f} MB "
                  f"({'PASS' if growth < 20 else 'MISS'} < 20 MB); peak RSS {p.hwm_mb():.1f} MB; "
                  f"speed {speed:g}x, {h.machine().get('cpu', '')}")
            return 0 if growth < 20 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    try:
        return run(args.speed, args.minutes, args.keep)
    except h.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
