"""Hostile input: random paths, queries, headers, bodies and tokens never give a 500, never
leak a secret, and never make the proxy fetch anything but NextPVR."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from yarl import URL

from proxy.app import create_app
from proxy.emulator import Emulator
from tests.conftest import TEST_PIN, EmulatorFactory, proxy_config

EXAMPLES = 2500

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=40)
#: digits str.isdigit() takes but int() may not (``²``) or takes as an alias (Arabic-Indic, fullwidth, ...)
_unicode_digits = st.one_of(
    st.sampled_from(["\u00b2", "\u0667\u0661\u0668\u0661", "\uff17\uff11\uff18\uff11", "7\u00b9", "\u2460",
                     "\u0967\u0968"]),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=12))
_ids = st.one_of(
    st.sampled_from(["7181", "7183", "7186", "1", "0", "-1", "999999999999", "4.1", "", "%00", "..",
                     "7181.ts", "00007181"]),
    st.integers(-10, 10**12).map(str), _text, _unicode_digits)
_tokens = st.one_of(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                            max_size=200), _text, st.just("A" * 5000))
_scopes = st.one_of(st.sampled_from(["live.7181.720p", "rec.1.720p", "blocked", "live.7181.4k",
                                     "live..720p", "x"]), _text)
_names = st.one_of(st.sampled_from(["0.ts", "index.m3u8", "segment.ts", "../../etc/passwd"]), _text)
_PATHS = [
    "/live/{id}.m3u8", "/live/{id}.ts", "/live.m3u8", "/live", "/hls/{scope}/{token}/{name}",
    "/recordings/{id}", "/recordings/{id}.m3u8", "/playlist.m3u", "/epg.xml", "/icons/{id}",
    "/api/channels", "/api/guide", "/api/recordings", "/api/recordings/{id}", "/auto/v{id}",
    "/discover.json", "/lineup.json", "/lineup_status.json", "/device.xml", "/recordings.m3u",
    "/healthz", "/readyz", "/metrics", "/{id}", "/{name}/{token}",
]
_query_keys = st.sampled_from(["channel", "profile", "format", "filter", "start", "end", "channel_id",
                               "api_key", "growing", "recording", "sid", "_HLS_msn", "x"])
_header_values = st.one_of(
    st.sampled_from(["bytes=0-", "bytes=-500", "bytes=10-5", "bytes=0-1,5-9", "bytes=99999999999-",
                     "items=0-1", "bytes=", "gzip", "*", "Bearer x"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    template = draw(st.sampled_from(_PATHS))
    parts = {
        "id": draw(_ids), "scope": draw(_scopes), "token": draw(_tokens), "name": draw(_names),
    }
    path = template.format(**{k: quote(v, safe="") for k, v in parts.items()})
    if draw(st.booleans()):
        raw = draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80))
        path = "/" + raw.lstrip("/") if draw(st.booleans()) else path + quote(raw)
    path = "/" + path.lstrip("/")  # "//x" would be a network-path reference, not a path
    query = draw(st.dictionaries(_query_keys, _ids, max_size=4))
    headers = draw(st.dictionaries(st.sampled_from(["Range", "X-API-Key", "Authorization", "If-None-Match",
                                                    "Accept-Encoding", "If-Range", "Content-Type"]),
                                   _header_values, max_size=3))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "DELETE", "OPTIONS", "PUT"]))
    body: bytes | None = None
    if method in ("POST", "PUT"):
        body = draw(st.one_of(
            st.binary(max_size=200),
            st.dictionaries(st.sampled_from(["event_id", "channel_id", "start", "duration", "name",
                                             "pre_padding", "post_padding"]),
                            st.one_of(st.integers(-2**40, 2**40), _text, st.none(), st.floats()),
                            max_size=5).map(lambda d: json.dumps(d).encode())))
    return {"method": method, "path": path, "query": query, "headers": headers, "body": body}


class Upstream:
    """Records every origin the proxy connects to (aiohttp TraceConfig)."""

    def __init__(self) -> None:
        self.origins: set[str] = set()
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._start)

    async def _start(self, session: aiohttp.ClientSession, ctx: Any,
                     params: aiohttp.TraceRequestStartParams) -> None:
        u = urlsplit(str(params.url))
        self.origins.add(f"{u.scheme}://{u.netloc}")


@pytest.fixture
async def fuzz_target(emulator_factory: EmulatorFactory) -> AsyncIterator[tuple[TestClient[Any, Any],
                                                                                Emulator, Upstream]]:
    emu = await emulator_factory(transcode_ready_seconds=0.0, tuners=2, segment_seconds=1)
    upstream = Upstream()
    config = proxy_config(emu.url, **{"auth.admin_key": "fuzz-admin-key", "hls.idle_timeout": 2,
                                      "logging.access_log": False})
    app = create_app(config, registry=CollectorRegistry(), trace_configs=[upstream.trace])
    client: TestClient[Any, Any] = TestClient(TestServer(app, access_log=None))
    await client.start_server()
    try:
        yield client, emu, upstream
    finally:
        await client.close()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(req=requests())
async def test_random_requests_never_500_never_leak_never_relay(
    req: dict[str, Any], fuzz_target: tuple[TestClient[Any, Any], Emulator, Upstream]
) -> None:
    client, emu, upstream = fuzz_target
    try:
        url = URL(req["path"], encoded=True).with_query(req["query"]) if req["query"] else \
            URL(req["path"], encoded=True)
    except ValueError:
        return  # not a URL a client could send
    try:
        async with asyncio.timeout(15):
            resp = await client.request(req["method"], url, headers=req["headers"], data=req["body"])
            try:
                body = await resp.content.read(256 * 1024)  # live TS never ends: read a bounded prefix
            finally:
                resp.close()
    except (aiohttp.ClientError, ValueError):
        return  # the client library refused to send it (e.g. an invalid header)
    assert resp.status != 500, f"{req['method']} {url} -> 500: {body[:300]!r}"
    assert 100 <= resp.status < 600
    visible = body + repr(dict(resp.headers)).encode()
    assert TEST_PIN.encode() not in visible
    for sid in emu.state.issued_sids:
        assert sid.encode() not in visible, f"{req['method']} {url} leaked a NextPVR session id"
    base = URL(emu.url)
    assert upstream.origins <= {f"{base.scheme}://{base.host}:{base.port}"}, upstream.origins


#: header values as raw bytes: anything but CR and LF (which would end the line), valid UTF-8 or not
_raw_values = st.one_of(
    st.sampled_from([b"\xff", b"Bearer \xff", b"\xc3\x28", b"\xed\xa0\x80", b"bytes=0-\xff", b"\x80" * 40]),
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
_raw_headers = st.sampled_from([b"X-API-Key", b"Authorization", b"Range", b"If-None-Match", b"If-Range",
                                b"User-Agent", b"X-Forwarded-Host", b"Host", b"Accept-Encoding"])
_RAW_PATHS = ["/api/channels", "/live/7181.m3u8", "/playlist.m3u", "/recordings/1", "/api/recordings/1",
              "/icons/7181", "/healthz", "/discover.json", "/lineup.json", "/epg.xml"]


@pytest.fixture
async def keyed_target(emulator_factory: EmulatorFactory) -> AsyncIterator[tuple[str, int, Emulator]]:
    """The proxy with API keys on (so the key headers are checked) and an admin key."""
    emu = await emulator_factory(transcode_ready_seconds=0.0, tuners=2, segment_seconds=1)
    config = proxy_config(emu.url, **{"auth.api_keys": ["fuzz-key"], "auth.admin_key": "fuzz-admin-key",
                                      "hls.idle_timeout": 2, "logging.access_log": False})
    server = TestServer(create_app(config, registry=CollectorRegistry()), access_log=None)
    await server.start_server()
    try:
        assert server.port is not None
        yield "127.0.0.1", server.port, emu
    finally:
        await server.close()


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(_RAW_PATHS), method=st.sampled_from([b"GET", b"HEAD", b"DELETE"]),
       headers=st.lists(st.tuples(_raw_headers, _raw_values), max_size=3))
async def test_header_bytes_that_are_not_utf8_never_500(
    path: str, method: bytes, headers: list[tuple[bytes, bytes]],
    keyed_target: tuple[str, int, Emulator],
) -> None:
    """Raw sockets: an HTTP client library would refuse to send most of these bytes."""
    host, port, emu = keyed_target
    lines = [method + b" " + path.encode() + b" HTTP/1.1", b"Connection: close"]
    if not any(name == b"Host" for name, _ in headers):
        lines.append(b"Host: proxy")
    lines += [name + b": " + value for name, value in headers]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        async with asyncio.timeout(15):
            answer = await reader.read(256 * 1024)
    finally:
        writer.close()
    assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), answer[:200]  # aiohttp's own 400s say 1.0
    status = int(answer[9:12])
    assert status != 500, f"{method!r} {path} {headers!r} -> 500: {answer[:300]!r}"
    assert TEST_PIN.encode() not in answer
    for sid in emu.state.issued_sids:
        assert sid.encode() not in answer
