from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.config import NextPVRConfig, TimeoutConfig
from proxy.errors import (
    ChannelNotFound,
    LoginRefused,
    NextPVRFailed,
    NextPVRTimeout,
    NextPVRUnparseable,
    NextPVRUnreachable,
    NoTunerAvailable,
    RangeNotSatisfiable,
    RecordingNotFound,
    SessionExpired,
    SessionPoolExhausted,
    TranscodeFailed,
)
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.models import RecordingStatus
from tests.fakes.nextpvr_fake import FakeNextPVR, FakeRequest, fail, ok, raw, resource, xml

# unusual enough that finding it in a log line cannot be a coincidence
PIN = "583920"
FORMATS = ["xml", "json"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class Recorder:
    def __init__(self) -> None:
        self.api: list[tuple[str, str]] = []
        self.logins: list[tuple[bool, bool]] = []

    def on_api_call(self, method: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.api.append((method, outcome))

    def on_login(self, relogin: bool, ok: bool) -> None:
        self.logins.append((relogin, ok))


MakeClient = Callable[..., Awaitable[NextPVRClient]]


@pytest.fixture
def fake() -> FakeNextPVR:
    return FakeNextPVR(pin=PIN)


@pytest.fixture
async def server(fake: FakeNextPVR, aiohttp_server: Any) -> AsyncIterator[TestServer]:
    srv: TestServer = await aiohttp_server(fake.app, access_log=None)  # request lines carry sids
    yield srv
    fake.release.set()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(requote_redirect_url=False) as session:
        yield session


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def make_client(
    server: TestServer, http: aiohttp.ClientSession, recorder: Recorder
) -> AsyncIterator[MakeClient]:
    clients: list[NextPVRClient] = []

    async def make(base_url: str | None = None, **overrides: Any) -> NextPVRClient:
        fields: dict[str, Any] = {
            "base_url": base_url or str(server.make_url("")),
            "pin": PIN,
            "timeouts": TimeoutConfig(connect=2.0, read=2.0, api_total=3.0),
        }
        fields.update(overrides)
        client = NextPVRClient(NextPVRConfig(**fields), http, observer=recorder)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.logout_all()


@pytest.fixture(autouse=True)
def hygiene(caplog: pytest.LogCaptureFixture, fake: FakeNextPVR) -> Iterator[None]:
    """Every test: nothing unscripted reached the fake, and no log line leaks the PIN or a sid."""
    caplog.set_level(logging.DEBUG, logger="proxy.nextpvr")
    yield
    assert fake.unexpected == []
    text = caplog.text
    assert PIN not in text
    for sid in fake.issued_sids:
        assert sid not in text
    for record in caplog.records:
        assert PIN not in record.getMessage()


# -- login --------------------------------------------------------------------------


async def test_login_with_the_right_pin(fake: FakeNextPVR, make_client: MakeClient, recorder: Recorder,
                                        caplog: pytest.LogCaptureFixture) -> None:
    fake.on("channel.list", resource("channel_list"))
    client = await make_client()
    channels = await client.channel_list()
    assert [c.id for c in channels] == [7181, 7200]
    assert (fake.initiates, fake.logins) == (1, 1)
    assert client.session.generation == 1
    assert recorder.logins == [(False, True)]
    sid = fake.issued_sids[0]
    assert sid not in repr(client.session)
    assert fake.calls_to("channel.list")[0].sid == sid
    assert "logged in to NextPVR (session #1" in caplog.text


async def test_wrong_pin_is_refused_without_revealing_it(fake: FakeNextPVR, make_client: MakeClient,
                                                         recorder: Recorder) -> None:
    fake.pin = "1111"
    fake.on("channel.list", resource("channel_list"))
    client = await make_client()
    with pytest.raises(LoginRefused) as info:
        await client.channel_list()
    assert "rejected the PIN" in info.value.message
    assert PIN not in info.value.message
    assert PIN not in info.value.body()
    assert all(sid not in info.value.message for sid in fake.issued_sids)
    assert recorder.logins == [(False, False)]
    assert not client.session.logged_in


async def test_concurrent_callers_share_one_failed_login(fake: FakeNextPVR, make_client: MakeClient) -> None:
    fake.pin = "1111"
    fake.login_gate = asyncio.Event()
    fake.on("channel.list", resource("channel_list"))
    client = await make_client()
    calls = [asyncio.create_task(client.channel_list()) for _ in range(10)]
    await fake.wait_for(lambda: fake.initiates == 1)
    fake.login_gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, LoginRefused) for r in results)
    assert fake.initiates == 1
    assert fake.failed_logins == 1


async def test_concurrent_first_calls_share_one_login(fake: FakeNextPVR, make_client: MakeClient) -> None:
    fake.login_gate = asyncio.Event()
    fake.on("channel.groups", resource("channel_groups"))
    client = await make_client()
    calls = [asyncio.create_task(client.channel_groups()) for _ in range(20)]
    await fake.wait_for(lambda: fake.initiates == 1)
    fake.login_gate.set()
    results = await asyncio.gather(*calls)
    assert all(len(r) == 2 for r in results)
    assert (fake.initiates, fake.logins) == (1, 1)


async def test_fifty_calls_on_an_expired_session_share_one_relogin(
    fake: FakeNextPVR, make_client: MakeClient, recorder: Recorder
) -> None:
    fake.on("channel.list", resource("channel_list"))
    client = await make_client()
    await client.channel_list()
    first_sid = fake.issued_sids[0]
    fake.expire_all()
    results = await asyncio.gather(*(client.channel_list() for _ in range(50)))
    assert all(len(r) == 2 for r in results)
    assert (fake.initiates, fake.logins) == (2, 2)
    assert client.session.generation == 2
    assert recorder.logins == [(False, True), (True, True)]
    assert recorder.api.count(("channel.list", "code8")) == 50
    assert recorder.api.count(("channel.list", "ok")) == 51
    assert [c.sid for c in fake.calls_to("channel.list")].count(first_sid) == 51


async def test_code8_twice_is_session_expired(fake: FakeNextPVR, make_client: MakeClient) -> None:
    async def always_code8(req: FakeRequest) -> web.StreamResponse:
        return fail(req, 8, "Invalid Session")

    fake.on("channel.list", always_code8)
    client = await make_client()
    with pytest.raises(SessionExpired) as info:
        await client.channel_list()
    assert len(fake.calls_to("channel.list")) == 2
    assert fake.logins == 2
    assert all(sid not in info.value.message for sid in fake.issued_sids)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_not_logged_in_message_without_code8_triggers_relogin(
    fake: FakeNextPVR, make_client: MakeClient, fmt: str
) -> None:
    answered: list[str] = []

    async def once_not_logged_in(req: FakeRequest) -> web.StreamResponse:
        answered.append(req.sid or "")
        if len(answered) == 1:
            return fail(req, 3, "Not logged in", stat="Failed")
        return await resource("setting_list")(req)

    fake.on("setting.list", once_not_logged_in)
    client = await make_client(response_format=fmt)
    settings = await client.setting_list()
    assert settings.version == 70103
    assert fake.logins == 2
    assert answered[0] != answered[1]


async def test_other_failures_are_not_retried(fake: FakeNextPVR, make_client: MakeClient,
                                              recorder: Recorder) -> None:
    fake.on("recording.delete", raw(b'{"stat":"Failed","code":2,"msg":"Invalid Args."}', "application/json"))
    client = await make_client(response_format="json")
    with pytest.raises(NextPVRFailed) as info:
        await client.recording_delete(1)
    assert info.value.code == 2
    assert "Invalid Args." in info.value.message
    assert len(fake.calls_to("recording.delete")) == 1
    assert fake.logins == 1
    assert ("recording.delete", "failed") in recorder.api


# -- typed methods in both formats ---------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_typed_reads(fake: FakeNextPVR, make_client: MakeClient, fmt: str) -> None:
    for method, name in [
        ("channel.list", "channel_list"),
        ("channel.groups", "channel_groups"),
        ("channel.listings", "channel_listings"),
        ("recording.list", "recording_list"),
        ("setting.list", "setting_list"),
        ("system.status", "system_status"),
    ]:
        fake.on(method, resource(name))
    client = await make_client(response_format=fmt)

    channels = await client.channel_list(group="All Channels")
    assert [(c.id, c.kind) for c in channels] == [(7181, "tv"), (7200, "radio")]
    assert "group_id=All%20Channels" in fake.calls_to("channel.list")[0].raw_query

    groups = await client.channel_groups()
    assert [g.name for g in groups] == ["All Channels", "Favourites"]

    listings = await client.channel_listings(7181, start=1735689600, end=1735700000.0)
    assert listings[0].start == 1735689600.0  # ms in XML, s in JSON: both seconds here
    assert listings[0].end - listings[0].start == 1800
    assert fake.calls_to("channel.listings")[0].params == {
        "channel_id": "7181", "start": "1735689600", "end": "1735700000"}

    recordings = await client.recording_list("ready")
    assert recordings[0].status is RecordingStatus.READY
    assert recordings[1].status is RecordingStatus.RECORDING
    assert fake.calls_to("recording.list")[0].params == {"filter": "ready"}

    settings = await client.setting_list()
    assert (settings.version, settings.readable_version) == (70103, "7.1.3")

    status = await client.system_status()
    assert (status.tuner_count, status.busy_count) == (3, 2)
    # only the XML form of system.status is known, so the client always asks for XML
    assert "format=" not in fake.calls_to("system.status")[0].raw_query

    for method in ("channel.list", "channel.groups", "setting.list"):
        asked_json = "format=json" in fake.calls_to(method)[0].raw_query
        assert asked_json == (fmt == "json")


async def test_recording_get_and_not_found(fake: FakeNextPVR, make_client: MakeClient) -> None:
    async def by_id(req: FakeRequest) -> web.StreamResponse:
        if req.params.get("recording_id") == "866":
            return await resource("recording_list")(req)
        return xml("<recordings/>")

    fake.on("recording.list", by_id)
    client = await make_client()
    rec = await client.recording_get(866)
    assert rec.name == "News at Ten"
    with pytest.raises(RecordingNotFound):
        await client.recording_get(999)


async def test_recording_save_and_delete_params(fake: FakeNextPVR, make_client: MakeClient) -> None:
    fake.on("recording.save", ok_handler)
    fake.on("recording.delete", ok_handler)
    client = await make_client()
    await client.recording_save(event_id=1323459, pre_padding=1, post_padding=2)
    await client.recording_save(channel_id=7181, start=1735689600.0, duration=1800, name="My Show & Co")
    await client.recording_delete(866)
    first, second = fake.calls_to("recording.save")
    assert first.params == {"event_id": "1323459", "pre_padding": "1", "post_padding": "2"}
    assert second.params == {"channel": "7181", "time_t": "1735689600", "duration": "1800",
                             "name": "My Show & Co"}
    assert "name=My%20Show%20%26%20Co" in second.raw_query
    assert fake.calls_to("recording.delete")[0].params == {"recording_id": "866"}


async def ok_handler(req: FakeRequest) -> web.StreamResponse:
    return ok(req)


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        pytest.param(b'<?xml version="1.0" ?><rsp stat="ok"><channels><channel>', "text/xml", id="xml"),
        pytest.param(b'{"channels": [{"channelId": 1,', "application/json", id="json"),
        pytest.param(b"<html>Server Error</html>", "text/html", id="html"),
        pytest.param(b'{"channels": "nope"}', "application/json", id="wrong-shape"),
    ],
)
async def test_malformed_answers_are_unparseable(
    fake: FakeNextPVR, make_client: MakeClient, recorder: Recorder, body: bytes, ctype: str
) -> None:
    fake.on("channel.list", raw(body, ctype))
    client = await make_client()
    with pytest.raises(NextPVRUnparseable) as info:
        await client.channel_list()
    assert "Server Error" not in info.value.message
    if body.startswith(b"{\"channels\": \"nope"):
        assert ("channel.list", "ok") in recorder.api  # the envelope was fine, the shape was not
    else:
        assert ("channel.list", "unparseable") in recorder.api


async def test_http_error_on_an_api_call_is_failed(fake: FakeNextPVR, make_client: MakeClient) -> None:
    fake.on("setting.list", raw(b"boom", "text/plain", status=500))
    client = await make_client()
    with pytest.raises(NextPVRFailed) as info:
        await client.setting_list()
    assert "HTTP 500" in info.value.message


# -- transport failures --------------------------------------------------------------


async def test_connection_refused_is_unreachable(make_client: MakeClient, unused_tcp_port: int,
                                                 recorder: Recorder) -> None:
    client = await make_client(base_url=f"http://127.0.0.1:{unused_tcp_port}")
    with pytest.raises(NextPVRUnreachable) as info:
        await client.channel_list()
    assert str(unused_tcp_port) not in info.value.message
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    assert recorder.api == [("session.initiate", "unreachable")]
    with pytest.raises(NextPVRUnreachable):
        await client.open_stream(client.live_stream_url(1, "0" * 32, "c-1"))


async def test_slow_answer_is_a_timeout(
    fake: FakeNextPVR, make_client: MakeClient, recorder: Recorder
) -> None:
    async def stall(req: FakeRequest) -> web.StreamResponse:
        await fake.release.wait()
        return ok(req)

    fake.on("channel.groups", stall)
    client = await make_client(timeouts=TimeoutConfig(connect=2.0, read=5.0, api_total=0.3))
    with pytest.raises(NextPVRTimeout) as info:
        await client.channel_groups()
    assert "channel.groups" in info.value.message
    assert ("channel.groups", "timeout") in recorder.api


# -- session pool --------------------------------------------------------------------


async def test_pool_holds_distinct_sessions_and_keeps_only_idle_sessions_warm(
    fake: FakeNextPVR, make_client: MakeClient
) -> None:
    fake.on("channel.transcode.initiate", ok_handler)
    client = await make_client(max_sessions=4, idle_sessions=1, idle_session_ttl=300.0)
    pool = client.pool
    leased = await asyncio.gather(pool.lease(), pool.lease(), pool.lease())
    assert (pool.in_use, pool.idle) == (3, 0)
    with pytest.raises(SessionPoolExhausted):
        await pool.lease()
    for i, session in enumerate(leased):
        await client.transcode_initiate(session, "channel", 7181 + i, "720p")
    used = [c.sid for c in fake.calls_to("channel.transcode.initiate")]
    assert len(set(used)) == 3
    assert all(fake.valid(sid or "") for sid in used)
    assert client.session.logged_in is False  # pooled sessions are separate from the API session

    for session in leased:
        await pool.release(session)
    assert (pool.in_use, pool.idle) == (0, 1)
    assert len(fake.logouts) == 2
    assert sum(fake.valid(sid or "") for sid in used) == 1

    again = await pool.lease()
    assert again in leased
    assert fake.initiates == 3  # reused, no new login
    await pool.release(again, discard=True)
    assert (pool.in_use, pool.idle) == (0, 0)
    assert len(fake.logouts) == 3


async def test_idle_pooled_sessions_are_logged_out_after_the_ttl(
    fake: FakeNextPVR, make_client: MakeClient
) -> None:
    client = await make_client(max_sessions=3, idle_sessions=2, idle_session_ttl=0.05)
    a, b = await client.pool.lease(), await client.pool.lease()
    await client.pool.release(a)
    await client.pool.release(b)
    assert client.pool.idle == 2
    await fake.wait_for(lambda: len(fake.logouts) == 2)
    assert client.pool.idle == 0


async def test_logout_all_logs_everyone_out(fake: FakeNextPVR, make_client: MakeClient) -> None:
    fake.on("channel.groups", resource("channel_groups"))
    client = await make_client(max_sessions=4)
    await client.channel_groups()
    await client.pool.lease()
    idle = await client.pool.lease()
    await client.pool.release(idle)
    await client.logout_all()
    assert sorted(fake.logouts) == sorted(fake.issued_sids)
    assert not client.session.logged_in


# -- transcodes ----------------------------------------------------------------------


async def test_transcode_lifecycle(fake: FakeNextPVR, make_client: MakeClient) -> None:
    polls: list[int] = []

    async def initiate(req: FakeRequest) -> web.StreamResponse:
        if req.params.get("profile") != "720p":
            return fail(req, 1, "Unknown profile")
        return ok(req)

    async def status(req: FakeRequest) -> web.StreamResponse:
        polls.append(1)
        return xml(f"<percentage>{min(100, 40 * len(polls))}</percentage><final>{len(polls) >= 3}</final>")

    gone = False

    async def lease(req: FakeRequest) -> web.StreamResponse:
        return web.Response(status=404) if gone else ok(req)

    fake.on("channel.transcode.initiate", initiate)
    fake.on("channel.transcode.status", status)
    fake.on("channel.transcode.lease", lease)
    fake.on("channel.transcode.stop", raw(b"", status=404))
    client = await make_client()
    session = await client.pool.lease()

    with pytest.raises(TranscodeFailed) as info:
        await client.transcode_initiate(session, "channel", 7181, "9999p")
    assert "9999p" in info.value.message
    assert info.value.profile == "9999p"

    await client.transcode_initiate(session, "channel", 7181, "720p")
    assert fake.calls_to("channel.transcode.initiate")[-1].params == {
        "force": "true", "channel_id": "7181", "profile": "720p"}
    st = await client.transcode_status(session, "channel")
    assert (st.percentage, st.ready) == (40, False)
    await client.transcode_status(session, "channel")
    st = await client.transcode_status(session, "channel")
    assert st.ready
    assert st.final

    assert await client.transcode_lease(session, "channel") is True
    gone = True
    assert await client.transcode_lease(session, "channel") is False
    assert await client.transcode_stop(session, "channel") is False  # already gone: no exception

    sid = await session.sid()
    url = client.transcode_playlist_url(sid, "channel")
    assert url.path == "/service"
    assert url.query["method"] == "channel.transcode.m3u8"
    assert url.query["sid"] == sid


async def test_transcode_status_failure_is_transcode_failed(
    fake: FakeNextPVR, make_client: MakeClient
) -> None:
    fake.on("recording.transcode.status", raw(b'<rsp stat="fail"><err code="1" msg="ffmpeg died"/></rsp>'))
    client = await make_client()
    session = await client.pool.lease()
    with pytest.raises(TranscodeFailed):
        await client.transcode_status(session, "recording")


# -- streams -------------------------------------------------------------------------


async def test_live_stream_is_relayed_and_the_url_carries_sid_and_client(
    fake: FakeNextPVR, make_client: MakeClient
) -> None:
    seen: list[web.Request] = []

    async def live(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        await resp.prepare(request)
        for i in range(5):
            await resp.write(bytes([i]) * 188 * 100)
        return resp

    fake.on_path("/live", live)
    client = await make_client()
    sid = await client.session.sid()
    client_id = client.new_client_id()
    assert client_id == "nextpvr-hls-proxy-1"
    async with await client.open_stream(client.live_stream_url(7181, sid, client_id)) as stream:
        assert stream.status == 200
        assert stream.content_type == "video/mp2t"
        assert stream.content_length is None
        data = b"".join([chunk async for chunk in stream.iter_chunks(4096)])
    assert len(data) == 5 * 188 * 100
    assert dict(seen[0].query) == {"channeloid": "7181", "client": client_id, "sid": sid}


async def test_recording_url_with_growing(make_client: MakeClient) -> None:
    client = await make_client()
    url = client.recording_stream_url(866, "a" * 32, "c-1", growing=True)
    assert url.path == "/live"
    assert dict(url.query) == {"recording": "866", "client": "c-1", "sid": "a" * 32, "growing": "true"}
    assert "growing" not in client.recording_stream_url(866, "a" * 32, "c-1").query


@pytest.mark.parametrize(
    ("status", "body", "query", "expected"),
    [
        pytest.param(404, b"No tuner was available for the requested channel.", "channeloid=1",
                     NoTunerAvailable, id="no-tuner"),
        pytest.param(404, b"", "channeloid=1", ChannelNotFound, id="channel-404"),
        pytest.param(404, b"", "recording=5", RecordingNotFound, id="recording-404"),
        pytest.param(500, b"required ID not provided", "recording=5", NextPVRFailed, id="500"),
    ],
)
async def test_stream_errors_are_translated(
    fake: FakeNextPVR, make_client: MakeClient, server: TestServer,
    status: int, body: bytes, query: str, expected: type[Exception],
) -> None:
    async def live(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body)

    fake.on_path("/live", live)
    client = await make_client(no_tuner_retry_after=7)
    with pytest.raises(expected) as info:
        await client.open_stream(URL(str(server.make_url("/live")) + "?" + query, encoded=True))
    if isinstance(info.value, NoTunerAvailable):
        assert info.value.retry_after == 7
        assert info.value.headers["Retry-After"] == "7"


async def test_range_not_satisfiable_carries_the_size(fake: FakeNextPVR, make_client: MakeClient) -> None:
    async def live(request: web.Request) -> web.StreamResponse:
        return web.Response(status=416, headers={"Content-Range": "bytes */1234"})

    fake.on_path("/live", live)
    client = await make_client()
    url = client.recording_stream_url(5, "s" * 32, "c")
    with pytest.raises(RangeNotSatisfiable) as info:
        await client.open_stream(url, headers={"Range": "bytes=9999-"})
    assert info.value.size == 1234


async def test_a_body_that_breaks_off_is_unreachable(fake: FakeNextPVR, make_client: MakeClient) -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100_000
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.close()
        return resp

    fake.on_path("/live", truncated)
    client = await make_client()
    stream = await client.open_stream(client.recording_stream_url(5, "s" * 32, "c"))
    with pytest.raises(NextPVRUnreachable):
        async for _ in stream.iter_chunks():
            pass
    await stream.close()


async def test_a_stream_that_stalls_is_a_timeout(fake: FakeNextPVR, make_client: MakeClient) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"x" * 188)
        await fake.release.wait()
        return resp

    fake.on_path("/live", stall)
    client = await make_client(timeouts=TimeoutConfig(connect=2.0, read=0.2, api_total=30.0))
    got: list[bytes] = []

    async def drain() -> None:
        async with await client.open_stream(client.live_stream_url(1, "s" * 32, "c")) as stream:
            async for chunk in stream.iter_chunks():
                got.append(chunk)

    with pytest.raises(NextPVRTimeout):
        await drain()
    assert b"".join(got) == b"x" * 188


# -- icons ---------------------------------------------------------------------------


async def test_channel_icon(fake: FakeNextPVR, make_client: MakeClient) -> None:
    async def icon(req: FakeRequest) -> web.StreamResponse:
        if req.params["channel_id"] == "1":
            return web.Response(body=PNG, content_type="image/png")
        return web.Response(status=404)

    fake.on("channel.icon", icon)
    client = await make_client()
    assert await client.channel_icon(1) == (PNG, "image/png")
    assert await client.channel_icon(2) is None


async def test_channel_icon_relogs_in_on_code8(fake: FakeNextPVR, make_client: MakeClient) -> None:
    fake.on("channel.icon", raw(PNG, "application/octet-stream"))
    fake.on("channel.groups", resource("channel_groups"))
    client = await make_client()
    await client.channel_groups()
    fake.expire_all()
    assert await client.channel_icon(1) == (PNG, "image/png")
    assert fake.logins == 2


async def test_json_envelope_failure_from_fake_helper(fake: FakeNextPVR, make_client: MakeClient) -> None:
    body = b'{"stat":"fail","code":5,"msg":"Channel not found"}'
    fake.on("channel.groups", raw(body, "application/json"))
    client = await make_client()
    with pytest.raises(NextPVRFailed) as info:
        await client.channel_groups()
    assert info.value.code == 5
