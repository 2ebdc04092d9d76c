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
_ids = st.one_of(
    st.sampled_from(["7181", "7183", "7186", "1", "0", "-1", "999999999999", "4.1", "", "%00", "..",
                     "7181.ts", "00007181"]),
    st.integers(-10, 10**12).map(str), _text)
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
