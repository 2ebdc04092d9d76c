"""Attacks on the proxy's HTTP edge (issue 11, section 4): raw sockets and a hostile NextPVR.

Each test reproduces one finding against a real server on loopback and checks the clear answer
that replaced it: Unicode-digit ids and undecodable key headers (400/401, not 500), slowloris and
idle connections (dropped after the configured timeouts), the connection bound (503 and close),
TS clients that vanish (499, no ERROR log, no 5xx), a ``/live`` upstream that drips (504 and the
upstream let go), control characters in a recording name (400) and hostile content types
(``nosniff`` everywhere; never ``text/html`` for a segment).

The connection tests run the proxy the way ``serve()`` does (``proxy.runner.start_site``): the
limits live below HTTP, in the site, which the aiohttp test server does not use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import ConfigError
from proxy.emulator import Emulator
from proxy.keys import METRICS_KEY, TS_KEY
from proxy.runner import start_site
from proxy.web.connections import ConnectionGuard, GuardedSite
from proxy.web.relay import content_type_for
from tests.conftest import EmulatorFactory, ProxyFactory, app_of, proxy_config, uris
from tests.fakes.hostile_http import HostileUpstream

CHANNEL = 7181
#: ids that ``str.isdigit()`` takes: superscript two (``int()`` refuses it: the old 500), the
#: channel's number in Arabic-Indic and in fullwidth digits (``int()`` takes them: the old alias)
UNICODE_IDS = ["\u00b2", "\u0667\u0661\u0668\u0661", "\uff17\uff11\uff18\uff11"]
ADMIN = "edge-admin-key"

Started = tuple[web.AppRunner, str, web.Application]
Serve = Callable[..., Awaitable[Started]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """The proxy app on a real site (``start_site``, as in production), with dotted overrides."""
    runners: list[web.AppRunner] = []

    async def start(base_url: str, **overrides: Any) -> Started:
        app = create_app(proxy_config(base_url, **overrides), registry=CollectorRegistry())
        runner, port = await start_site(app, "127.0.0.1", 0, shutdown_timeout=1)
        runners.append(runner)
        return runner, f"127.0.0.1:{port}", app

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


async def raw_exchange(address: str, request: bytes, *, timeout: float = 10) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        async with asyncio.timeout(timeout):
            return await reader.read(65536)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


async def closed_by_server(reader: asyncio.StreamReader) -> None:
    """Returns once the server closed (EOF or reset); whatever it sent first is discarded."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass


def guard_of(runner: web.AppRunner) -> ConnectionGuard:
    (site,) = runner.sites
    assert isinstance(site, GuardedSite)
    return site.guard


def requests_by_class(app: web.Application, route: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for metric in app[METRICS_KEY].registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("route") == route \
                    and "status_class" in sample.labels:
                counts[sample.labels["status_class"]] = counts.get(sample.labels["status_class"], 0) + sample.value
    return counts


# -- 1. ids and key headers ---------------------------------------------------------------------

ID_ROUTES = [
    ("GET", "/live/{id}.m3u8"), ("GET", "/live/{id}.ts"), ("GET", "/live.m3u8?channel={id}"),
    ("GET", "/live?channel={id}"), ("HEAD", "/live/{id}.ts"), ("HEAD", "/live/{id}.m3u8"),
    ("GET", "/recordings/{id}"), ("GET", "/recordings/{id}.m3u8"), ("HEAD", "/recordings/{id}.m3u8"),
    ("GET", "/icons/{id}"), ("GET", "/api/recordings/{id}"), ("DELETE", "/api/recordings/{id}"),
    ("GET", "/api/guide?channel_id={id}"), ("GET", "/api/guide?channel_id=7181&start={id}"),
]


@pytest.mark.parametrize("value", UNICODE_IDS, ids=["superscript", "arabic-indic", "fullwidth"])
async def test_ids_with_unicode_digits_are_400_on_every_id_route(
        emulator: Emulator, proxy_factory: ProxyFactory, value: str) -> None:
    proxy = await proxy_factory(emulator, **{"auth.admin_key": ADMIN})
    for method, template in ID_ROUTES:
        async with asyncio.timeout(10):
            resp = await proxy.request(method, template.format(id=value), headers={"X-API-Key": ADMIN})
            status = resp.status
            resp.close()
        assert status == 400, f"{method} {template} with {value!r}: {status}"
    # HDHomeRun tuning takes ASCII guide numbers only: anything else matches no route
    resp = await proxy.get(f"/auto/v{value}")
    assert resp.status == 404
    assert app_of(proxy)[TS_KEY].streams() == [], "a Unicode id opened a stream"
    assert emulator.state.counters.transcodes_started == 0, "a Unicode id started a transcode"


@pytest.mark.parametrize("value", UNICODE_IDS, ids=["superscript", "arabic-indic", "fullwidth"])
async def test_admin_json_ids_with_unicode_digits_are_400(
        emulator: Emulator, proxy_factory: ProxyFactory, value: str) -> None:
    proxy = await proxy_factory(emulator, **{"auth.admin_key": ADMIN})
    start = int(time.time()) + 3600
    bodies: list[dict[str, Any]] = [
        {"channel_id": value, "start": start, "duration": 600},
        {"event_id": value},
        {"channel_id": CHANNEL, "start": start, "duration": value},
        {"channel_id": CHANNEL, "start": start, "duration": 600, "pre_padding": value},
    ]
    for body in bodies:
        resp = await proxy.post("/api/recordings", json=body, headers={"X-API-Key": ADMIN})
        answer = await resp.json()
        assert resp.status == 400, (body, answer)
        assert answer["field"] in body


@pytest.mark.parametrize("header", [b"X-API-Key: \xff", b"Authorization: Bearer \xff",
                                    b"X-API-Key: \xc3\x28key", b"Authorization: Bearer \xed\xa0\x80"])
async def test_api_key_headers_that_are_not_utf8_are_401(emulator: Emulator, serve: Serve,
                                                         header: bytes) -> None:
    _, address, _ = await serve(emulator.url, **{"auth.api_keys": ["edge-key"], "auth.admin_key": ADMIN})
    answer = await raw_exchange(address, b"GET /api/channels?api_key=%FF HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
    assert status_of(answer) == 401, answer[:200]
    for path in (b"/api/channels", b"/playlist.m3u"):
        answer = await raw_exchange(address, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                    + header + b"\r\n\r\n")
        assert status_of(answer) == 401, answer[:200]
    # admin actions compare the key themselves
    _, address, _ = await serve(emulator.url, **{"auth.admin_key": ADMIN})
    answer = await raw_exchange(address, b"DELETE /api/recordings/1 HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n" + header + b"\r\n\r\n")
    assert status_of(answer) == 401, answer[:200]


# -- 2. idle and half-open connections ---------------------------------------------------------

async def test_slowloris_connections_are_dropped_after_the_header_timeout(emulator: Emulator,
                                                                         serve: Serve) -> None:
    runner, address, _ = await serve(emulator.url, **{"server.header_timeout": 1, "server.keepalive_timeout": 60})
    host, port = address.rsplit(":", 1)
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(10)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for i in range(1000):  # a header line every 0.2 s: never the blank line that ends the head
            try:
                writer.write(b"X-%d: y\r\n" % i)
                await writer.drain()
            except ConnectionError:
                return
            await asyncio.sleep(0.2)

    tricklers = [asyncio.create_task(trickle(w)) for _, w in streams]
    try:
        # generous bound (the deadline is 1 s): a shared CI machine may be slow, but never 20 s slow,
        # and without the deadline the sockets stay open for aiohttp's hour-long keep-alive
        async with asyncio.timeout(20):
            await asyncio.gather(*(closed_by_server(r) for r, _ in streams))
    finally:
        for task in tricklers:
            task.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
        for _, w in streams:
            w.close()
    guard = guard_of(runner)
    assert guard.header_timeouts == 10
    assert guard.open == 0, "a dropped connection is still counted"
    # a client that sends its head in time is served on a fresh connection
    answer = await raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 200


async def test_idle_keepalive_connections_are_closed_after_the_keepalive_timeout(emulator: Emulator,
                                                                                 serve: Serve) -> None:
    _, address, _ = await serve(emulator.url, **{"server.keepalive_timeout": 1})
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert status_of(head) == 200
        async with asyncio.timeout(15):  # generous (the timeout is 1 s), see the slowloris test
            await closed_by_server(reader)
    finally:
        writer.close()


async def test_connections_beyond_the_bound_are_refused_idle_ones_counted(emulator: Emulator,
                                                                         serve: Serve) -> None:
    runner, address, _ = await serve(emulator.url, **{"server.max_clients": 3, "server.max_connections": 5,
                                                      "server.header_timeout": 60})
    host, port = address.rsplit(":", 1)
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
    try:
        # the bound counts these five although none has sent a byte
        extra = await raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(extra) == 503, extra[:200]
        assert b"Retry-After: 5" in extra
        # a kept-alive connection is still served while the bound holds
        reader, writer = idle[0]
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(await reader.read(65536)) == 200
        writer.close()
        await closed_by_server(reader)
        # one slot free again: a new client gets in
        for _ in range(50):
            answer = await raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if status_of(answer) == 200:
                break
            await asyncio.sleep(0.05)  # the server sees the close a moment after the client did
        assert status_of(answer) == 200
        assert guard_of(runner).refused >= 1
    finally:
        for _, w in idle:
            w.close()


@pytest.mark.parametrize(("overrides", "key"), [
    ({"server.header_timeout": 0}, "server.header_timeout"),
    ({"server.keepalive_timeout": -1}, "server.keepalive_timeout"),
    ({"server.max_clients": 10, "server.max_connections": 9}, "server.max_connections"),
])
def test_connection_limits_are_validated(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        proxy_config("http://127.0.0.1:8866", **overrides)


def test_the_connection_bound_defaults_to_twice_max_clients() -> None:
    assert proxy_config("http://127.0.0.1:8866", **{"server.max_clients": 7}).server.connection_limit == 14


# -- 3. TS clients that leave at once --------------------------------------------------------

async def test_ts_clients_that_vanish_are_499_without_error_logs(
        emulator_factory: EmulatorFactory, serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    emu = await emulator_factory(tuners=2)
    _, address, app = await serve(emu.url, **{"ts.linger": 30})
    host, port = address.rsplit(":", 1)
    route = "/live/{channel_id}.ts"
    # one viewer keeps the stream (and its keyframe cache) up, so the churners get bytes at once
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /live/{CHANNEL}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(await reader.readuntil(b"\r\n\r\n")) == 200
    caplog.set_level(logging.INFO)
    churn = 100
    try:
        for i in range(churn):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(f"GET /live/{CHANNEL}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            # a plain close (FIN): the request is always delivered, so every one is counted below
            sock.close()
            if i % 10 == 0:
                await asyncio.sleep(0)  # let the server run between bursts
        async with asyncio.timeout(30):
            while sum(requests_by_class(app, route).values()) < churn:
                await asyncio.sleep(0.05)  # the metrics have no event to await
    finally:
        writer.close()
    stream = app[TS_KEY].get(CHANNEL)
    assert stream is not None
    async with asyncio.timeout(10):  # nobody left behind: only the long viewer still watches
        await app[TS_KEY].wait_for(lambda: len(stream.viewers) <= 1)
    counts = requests_by_class(app, route)
    assert counts.get("5xx", 0) == 0, counts
    assert counts.get("4xx", 0) >= churn, counts  # 499: they left (the long viewer is still counting)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors[:3]]


# -- 4. a /live upstream that drips ----------------------------------------------------------

async def test_a_dripping_live_upstream_gets_504_and_is_let_go(emulator: Emulator,
                                                               proxy_factory: ProxyFactory) -> None:
    hostile = HostileUpstream(emulator.url, drip_live=True, drip_interval=0.2)
    await hostile.start()
    try:
        proxy = await proxy_factory(hostile.url, **{"ts.upstream_idle_timeout": 1, "ts.reconnect": False})
        async with asyncio.timeout(20):  # generous: the idle timeout is 1 s
            resp = await proxy.get(f"/live/{CHANNEL}.ts")
            text = await resp.text()
        assert resp.status == 504, text
        assert "NextPVR" in text
        ts = app_of(proxy)[TS_KEY]
        async with asyncio.timeout(10):
            await ts.wait_for(lambda: not ts.streams())
            while hostile.open_drips:
                await asyncio.sleep(0.05)  # the fake's handler sees the close on its next write
    finally:
        await hostile.stop()


# -- 5. control characters in a recording name -----------------------------------------------

@pytest.mark.parametrize("name", ["news\x00; drop", "line\nbreak", "bell\x07", "del\x7f", "c1\x85",
                                  "sep\u2028x", "lone \ud800 surrogate"])
async def test_recording_names_with_control_characters_are_400(emulator: Emulator, proxy_factory: ProxyFactory,
                                                               name: str) -> None:
    proxy = await proxy_factory(emulator, **{"auth.admin_key": ADMIN})
    # json.dumps escapes every non-ASCII character, a lone surrogate included
    body = json.dumps({"channel_id": CHANNEL, "start": int(time.time()) + 3600, "duration": 600,
                       "name": name}).encode()
    resp = await proxy.post("/api/recordings", data=body, headers={"X-API-Key": ADMIN,
                                                                   "Content-Type": "application/json"})
    answer = await resp.json()
    assert resp.status == 400, answer
    assert answer["field"] == "name"
    recordings = await (await proxy.get("/api/recordings?filter=all")).json()
    assert not [r for r in recordings["recordings"] if "\x00" in r["name"] or "\n" in r["name"]]


# -- 6. content types --------------------------------------------------------------------------

async def test_every_response_says_nosniff(emulator: Emulator, proxy: TestClient[Any, Any]) -> None:
    for path in ("/healthz", "/nope", "/api/channels", "/live/abc.ts", f"/live/{CHANNEL}.m3u8", "/"):
        resp = await proxy.get(path)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", (path, resp.status)
        await resp.read()
    async with asyncio.timeout(20):
        resp = await proxy.get(f"/live/{CHANNEL}.ts")
        assert resp.status == 200
        assert resp.headers.get("X-Content-Type-Options") == "nosniff"
        resp.close()


async def test_a_segment_served_as_html_upstream_is_not_html_here(emulator_factory: EmulatorFactory,
                                                                   proxy_factory: ProxyFactory) -> None:
    emu = await emulator_factory(transcode_ready_seconds=0.0)
    hostile = HostileUpstream(emu.url, html_segments=True)
    await hostile.start()
    try:
        proxy = await proxy_factory(hostile.url)
        recordings = await (await proxy.get("/api/recordings?filter=ready")).json()
        rec_id = recordings["recordings"][0]["id"]
        resp = await proxy.get(f"/recordings/{rec_id}.m3u8")
        text = await resp.text()
        assert resp.status == 200, text
        segments = uris(text)
        assert segments and segments[0].endswith(".m2ts"), text
        seg = await proxy.get(segments[0])
        body = await seg.read()
        assert seg.status == 200
        assert hostile.html_served >= 1, "the hostile upstream did not answer with text/html"
        assert seg.headers["Content-Type"] == "video/mp2t"
        assert seg.headers["X-Content-Type-Options"] == "nosniff"
        assert body[:1] == b"\x47"
    finally:
        await hostile.stop()


@pytest.mark.parametrize(("name", "upstream", "served"), [
    ("0.ts", "text/html", "video/mp2t"), ("a.m4s", "text/html", "video/mp4"), ("a.mp4", None, "video/mp4"),
    ("a.aac", "text/html", "audio/aac"), ("a.vtt", "text/html", "text/vtt"),
    ("key.key", "text/html", "application/octet-stream"), ("a.m2ts", "text/html", "video/mp2t"),
    ("x", "text/html; charset=utf-8", "application/octet-stream"), ("x", "application/javascript",
                                                                     "application/octet-stream"),
    ("x", "image/svg+xml", "application/octet-stream"), ("x", "application/xhtml+xml", "application/octet-stream"),
    ("x", "text/plain", "application/octet-stream"), ("x", "video/MP2T", "video/mp2t"),
    ("x", "audio/mp4; codecs=mp4a", "audio/mp4"), ("x", "video/<script>", "application/octet-stream"),
])
def test_segment_content_types_come_from_the_name_or_a_media_type(name: str, upstream: str | None,
                                                                  served: str) -> None:
    assert content_type_for(name, upstream) == served
