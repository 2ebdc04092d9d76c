"""Attacks on the HTTP edge, measured (issue 11 section 4): reported numbers, no targets.

    .venv/bin/python benchmarks/edge_attacks.py [--churn 600] [--slowloris 10] [--hold 130]

Runs the proxy as ``serve()`` does (``start_site``, default config) in front of the emulator and
reports:

- slowloris: N connections that send a header line every second and never end their head; how
  long until the proxy closed each (``--hold`` caps the wait: "held" means still open then);
- churn: raw-socket clients of ``/live/{id}.ts`` that close right after their request; the 5xx
  the metrics counted and the ERROR log records;
- drip: a ``/live`` upstream sending one byte a second; the status a TS client gets and when.

Run it against an older checkout with ``PYTHONPATH=/path/to/checkout`` to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import time
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import parse_config
from proxy.emulator import Emulator, EmulatorConfig
from proxy.keys import METRICS_KEY
from proxy.runner import start_site
from tests.fakes.hostile_http import HostileUpstream

CHANNEL = 7181
PIN = "918273"


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _config(base_url: str, **server: Any) -> Any:
    raw = {"nextpvr": {"base_url": base_url, "pin": PIN}, "server": {"host": "127.0.0.1", "port": 0, **server},
           "logging": {"access_log": False}}
    return parse_config(yaml.safe_dump(raw), source="<bench>", env={})


async def slowloris(address: tuple[str, int], n: int, hold: float) -> list[float | None]:
    async def one() -> float | None:
        reader, writer = await asyncio.open_connection(*address)
        start = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            for i in range(int(hold) + 5):
                await asyncio.sleep(1)
                writer.write(b"X-%d: y\r\n" % i)

        task = asyncio.create_task(trickle())
        try:
            async with asyncio.timeout(hold):
                while await reader.read(4096):
                    pass
            return time.monotonic() - start
        except ConnectionError:
            return time.monotonic() - start
        except TimeoutError:
            return None
        finally:
            task.cancel()
            writer.close()

    return list(await asyncio.gather(*(one() for _ in range(n))))


def churn(address: tuple[str, int], n: int) -> None:
    for _ in range(n):
        sock = socket.create_connection(address)
        sock.sendall(f"GET /live/{CHANNEL}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.close()


def five_xx(app: Any) -> float:
    total = 0.0
    for metric in app[METRICS_KEY].registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("status_class") == "5xx":
                total += sample.value
    return total


async def main(args: argparse.Namespace) -> None:
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    async with Emulator(EmulatorConfig(pin=PIN, tuners=4)) as emu:
        app = create_app(_config(emu.url), registry=CollectorRegistry())
        runner, port = await start_site(app, "127.0.0.1", 0, shutdown_timeout=1)
        address = ("127.0.0.1", port)
        try:
            closed = await slowloris(address, args.slowloris, args.hold)
            held = sum(1 for c in closed if c is None)
            times = sorted(c for c in closed if c is not None)
            print(f"slowloris: {args.slowloris} connections, {held} still held after {args.hold:.0f}s"
                  + (f", closed after {times[0]:.1f}-{times[-1]:.1f}s" if times else ""))
            # a long viewer keeps the channel up, as in real zapping
            reader, writer = await asyncio.open_connection(*address)
            writer.write(f"GET /live/{CHANNEL}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            before_errors, before_5xx = errors.count, five_xx(app)
            await asyncio.get_running_loop().run_in_executor(None, churn, address, args.churn)
            await asyncio.sleep(3)  # let the server finish the churners' handlers
            writer.close()
            print(f"churn: {args.churn} clients that closed after the request: "
                  f"{five_xx(app) - before_5xx:.0f} counted 5xx, {errors.count - before_errors} ERROR records")
        finally:
            await runner.cleanup()
        hostile = HostileUpstream(emu.url, drip_live=True, drip_interval=1.0)
        await hostile.start()
        app = create_app(_config(hostile.url), registry=CollectorRegistry())
        runner, port = await start_site(app, "127.0.0.1", 0, shutdown_timeout=1)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            start = time.monotonic()
            writer.write(f"GET /live/{CHANNEL}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            try:
                async with asyncio.timeout(args.hold):
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head.split(b" ", 2)[1].decode()
                    body = 0
                    if status == "200":
                        while chunk := await reader.read(65536):
                            body += len(chunk)
                    print(f"drip: status {status} after {time.monotonic() - start:.1f}s"
                          + (f", {body} body bytes until the close" if status == "200" else ""))
            except TimeoutError:
                print(f"drip: no status, or a 200 with no end, after {args.hold:.0f}s")
            writer.close()
        finally:
            await runner.cleanup()
            await hostile.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--churn", type=int, default=600)
    parser.add_argument("--slowloris", type=int, default=10)
    parser.add_argument("--hold", type=float, default=130.0)
    asyncio.run(main(parser.parse_args()))
