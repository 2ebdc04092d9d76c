"""Python load clients (run on the client core): time to first byte, slow viewers, fast TS viewers.

wrk drives everything that is "as many requests as possible"; these clients do what wrk cannot:

- ``ttfb``: one keep-alive connection per target, requests in turn, the time from sending the
  request to the first response byte (the body is then read to its end);
- ``slow``: viewers that read at a fixed rate (1 Mbit/s) through sockets whose MSS is 1448 (a
  real network's, not loopback's ~64 KB), either live TS (an endless body; a viewer that the
  proxy disconnects reconnects after a second, as players do) or HLS segments in turn;
- ``fast-ts``: live TS viewers that read as fast as they can; bytes counted in a time window.

``slow`` and ``fast-ts`` run as their own processes (``python benchmarks/clients.py slow ...``) and
print one JSON line; every one of them stops by itself at its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MSS = 1448
TICK = 0.05
HEADER_LIMIT = 64 * 1024


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def request_bytes(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench\r\n\r\n".encode()


def _head(raw: bytes) -> tuple[int, int | None, bool]:
    """Status, Content-Length and whether the body is chunked, from a header block."""
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    return status, length, chunked


# -- time to first byte (blocking sockets, one request at a time) ---------------------------------
class _Conn:
    def __init__(self, url: str) -> None:
        self.host, self.port, self.path = _split(url)
        self.sock: socket.socket | None = None
        self.buf = bytearray(1 << 20)

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def ttfb(self) -> float:
        """Seconds from sending the request to the first response byte; reads the whole body."""
        sock = self._connect()
        view = memoryview(self.buf)
        req = request_bytes(self.host, self.port, self.path)
        started = time.perf_counter()
        sock.sendall(req)
        n = sock.recv_into(view)
        first = time.perf_counter() - started
        if n == 0:
            raise ConnectionError("closed before the response")
        data = bytes(view[:n])
        while b"\r\n\r\n" not in data:
            n = sock.recv_into(view)
            if n == 0:
                raise ConnectionError("closed in the headers")
            data += bytes(view[:n])
            if len(data) > HEADER_LIMIT:
                raise ConnectionError("headers too long")
        head, _, rest = data.partition(b"\r\n\r\n")
        status, length, _chunked = _head(head)
        if status != 200 or length is None:
            raise ConnectionError(f"HTTP {status}, length {length}: the target must answer 200 with a length")
        left = length - len(rest)
        while left > 0:
            n = sock.recv_into(view[:min(left, len(view))])
            if n == 0:
                raise ConnectionError("closed in the body")
            left -= n
        return first


def ttfb_rounds(urls: dict[str, str], rounds: int, *, warmup: int = 5) -> dict[str, list[float]]:
    """Time to first byte, ms, per target; targets take turns (in a shuffled order each round)."""
    conns = {name: _Conn(url) for name, url in urls.items()}
    out: dict[str, list[float]] = {name: [] for name in urls}
    rng = random.Random(7)
    try:
        for i in range(warmup + rounds):
            names = list(conns)
            rng.shuffle(names)
            for name in names:
                value = conns[name].ttfb() * 1e3
                if i >= warmup:
                    out[name].append(value)
    finally:
        for conn in conns.values():
            conn.close()
    return out


# -- slow viewers (asyncio, sockets with a real MSS) ----------------------------------------------
@dataclass
class Tally:
    bytes: int = 0
    responses: int = 0
    disconnects: int = 0
    errors: int = 0
    connects: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        name = type(exc).__name__
        self.error_kinds[name] = self.error_kinds.get(name, 0) + 1


async def _connect(host: str, port: int, mss: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if mss:
        # before connect, so the SYN advertises it: the proxy then sends 1448-byte segments
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Pacer:
    """A token bucket: at most ``rate`` bytes/s, bursts of at most one tick's worth (plus a packet)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.budget = 0.0
        self.last = time.monotonic()

    async def allowance(self) -> int:
        while True:
            now = time.monotonic()
            self.budget = min(self.budget + (now - self.last) * self.rate, self.rate * TICK + MSS)
            self.last = now
            if self.budget >= 1:
                return int(self.budget)
            await asyncio.sleep(TICK)

    def spend(self, n: int) -> None:
        self.budget -= n


async def _read_head(sock: socket.socket, pacer: Pacer | None) -> tuple[int, int | None, bool, bytes]:
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        want = await pacer.allowance() if pacer else 65536
        chunk = await loop.sock_recv(sock, want)
        if not chunk:
            raise ConnectionResetError("closed before the headers")
        if pacer:
            pacer.spend(len(chunk))
        data += chunk
        if len(data) > HEADER_LIMIT:
            raise ConnectionError("headers too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    status, length, chunked = _head(head)
    return status, length, chunked, rest


async def slow_viewer(url: str, paths: Sequence[str], rate: float, deadline: float, tally: Tally,
                      mode: str, delay: float) -> None:
    """One viewer at ``rate`` bytes/s until ``deadline``: an endless TS body, or HLS segments in turn."""
    host, port, default_path = _split(url)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(delay)
    index = random.randrange(len(paths)) if paths else 0
    while time.monotonic() < deadline:
        sock: socket.socket | None = None
        try:
            sock = await _connect(host, port, MSS)
            tally.connects += 1
            pacer = Pacer(rate)
            while time.monotonic() < deadline:
                path = paths[index % len(paths)] if paths else default_path
                index += 1
                await loop.sock_sendall(sock, request_bytes(host, port, path))
                status, length, _chunked, rest = await _read_head(sock, pacer)
                if status != 200:
                    raise ConnectionError(f"HTTP {status}")
                got = len(rest)
                tally.bytes += got
                if mode == "hls" and length is None:
                    raise ConnectionError("a segment without Content-Length")
                while (length is None or got < length) and time.monotonic() < deadline:
                    want = await pacer.allowance()
                    if length is not None:
                        want = min(want, length - got)
                    chunk = await loop.sock_recv(sock, want)
                    if not chunk:
                        raise ConnectionResetError("closed by the server")
                    pacer.spend(len(chunk))
                    got += len(chunk)
                    tally.bytes += len(chunk)
                if length is not None and got >= length:
                    tally.responses += 1
        except (ConnectionResetError, BrokenPipeError) as exc:
            if mode == "ts":
                tally.disconnects += 1  # the proxy let go of a viewer that fell behind
            else:
                tally.error(exc)
            await asyncio.sleep(1.0)
        except (OSError, ValueError, IndexError) as exc:
            tally.error(exc)
            await asyncio.sleep(1.0)
        finally:
            if sock is not None:
                sock.close()


async def fast_ts_viewer(url: str, deadline: float, window: tuple[float, float], tally: Tally,
                         counted: list[int], index: int) -> None:
    """Read an endless TS body as fast as possible; bytes inside ``window`` go to ``counted[index]``."""
    host, port, path = _split(url)
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        sock: socket.socket | None = None
        try:
            sock = await _connect(host, port, None)
            tally.connects += 1
            await loop.sock_sendall(sock, request_bytes(host, port, path))
            status, _length, _chunked, rest = await _read_head(sock, None)
            if status != 200:
                raise ConnectionError(f"HTTP {status}")
            tally.bytes += len(rest)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 262144), left)
                except TimeoutError:
                    return
                if not chunk:
                    raise ConnectionResetError("closed by the server")
                now = time.monotonic()
                tally.bytes += len(chunk)
                if window[0] <= now < window[1]:
                    counted[index] += len(chunk)
        except (OSError, ValueError, IndexError) as exc:
            tally.error(exc)
            await asyncio.sleep(0.5)
        finally:
            if sock is not None:
                sock.close()


async def _slow_main(args: argparse.Namespace) -> dict[str, object]:
    text = Path(args.paths).read_text() if args.paths else ""
    paths = [line.strip() for line in text.splitlines() if line.strip()]
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.seconds
    spread = min(1.0, args.seconds / 4)
    tasks = [asyncio.create_task(slow_viewer(args.url, paths, args.rate, deadline, tally, args.mode,
                                             spread * i / max(1, args.count)))
             for i in range(args.count)]
    await asyncio.wait(tasks, timeout=args.seconds + 10)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - started
    return {"viewers": args.count, "seconds": elapsed, "bytes": tally.bytes,
            "mbit_per_viewer": tally.bytes * 8 / elapsed / 1e6 / max(1, args.count),
            "responses": tally.responses, "disconnects": tally.disconnects, "connects": tally.connects,
            "errors": tally.errors, "error_kinds": tally.error_kinds}


async def _fast_ts_main(args: argparse.Namespace) -> dict[str, object]:
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.seconds
    window = (started + args.warmup, deadline)
    counted = [0] * args.count
    tasks = [asyncio.create_task(fast_ts_viewer(args.url, deadline, window, tally, counted, i))
             for i in range(args.count)]
    await asyncio.wait(tasks, timeout=args.seconds + 10)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)
    span = args.seconds - args.warmup
    return {"viewers": args.count, "window_seconds": span, "window_bytes": sum(counted),
            "mb_per_s": sum(counted) / span / 1e6, "min_viewer_mb_per_s": min(counted) / span / 1e6,
            "connects": tally.connects, "errors": tally.errors, "error_kinds": tally.error_kinds}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="benchmark load clients")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("slow", help="viewers reading at a fixed rate through MSS-1448 sockets")
    s.add_argument("--url", required=True, help="base URL (the TS stream itself in ts mode)")
    s.add_argument("--mode", choices=["ts", "hls"], required=True)
    s.add_argument("--paths", help="file of request paths (hls: the segments, taken in turn)")
    s.add_argument("--count", type=int, default=200)
    s.add_argument("--rate", type=float, default=125_000, help="bytes per second per viewer (1 Mbit/s)")
    s.add_argument("--seconds", type=float, required=True)
    f = sub.add_parser("fast-ts", help="live TS viewers reading as fast as they can")
    f.add_argument("--url", required=True)
    f.add_argument("--count", type=int, default=10)
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args(argv)
    coro = _slow_main(args) if args.command == "slow" else _fast_ts_main(args)
    result = asyncio.run(coro)
    print("CLIENT_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
