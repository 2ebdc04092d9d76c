"""The JSON API: channels, guide, recordings, and scheduling/deleting recordings through NextPVR
(checked in the emulator's own ``recording.list``), behind the admin key."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.emulator.data import CHANNELS, Programme, channel_by_oid
from tests.conftest import TEST_PIN, ProxyFactory

ADMIN = "admin-key-for-tests"
PRE, POST = 3, 7  # not the emulator's own defaults (1, 2), so a missing padding shows


async def emulator_recordings(emu: Emulator) -> dict[int, dict[str, str]]:
    """recording.list filter=all straight from the emulator, logged in as a NextPVR client would."""
    async with aiohttp.ClientSession() as http:
        async def call(**params: str) -> ET.Element:
            async with http.get(f"{emu.url}/service", params=params) as resp:
                assert resp.status == 200
                return ET.fromstring(await resp.read())

        root = await call(method="session.initiate", ver="1.0", device="pytest")
        sid, salt = root.findtext("sid", ""), root.findtext("salt", "")
        inner = hashlib.md5(TEST_PIN.encode()).hexdigest()
        digest = hashlib.md5(f":{inner}:{salt}".encode()).hexdigest()
        assert (await call(method="session.login", sid=sid, md5=digest)).get("stat") == "ok"
        root = await call(method="recording.list", filter="all", sid=sid)
        await call(method="session.logout", sid=sid)
    return {int(r.findtext("id", "0")): {child.tag: child.text or "" for child in r}
            for r in root.iter("recording")}


def future_programme(emu: Emulator, channel_oid: int = 7183, hours_ahead: float = 48) -> Programme:
    channel = channel_by_oid(channel_oid)
    assert channel is not None
    prog = emu.state.guide.at(channel, time.time() + hours_ahead * 3600)
    assert emu.state.store.by_event(prog.event_id) is None
    return prog


@pytest.fixture
async def admin_proxy(emulator: Emulator, proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await proxy_factory(emulator, **{"auth.admin_key": ADMIN, "dvr.pre_padding_minutes": PRE,
                                            "dvr.post_padding_minutes": POST})


async def json_of(resp: aiohttp.ClientResponse, status: int) -> Any:
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert resp.status == status, body
    return body


async def test_channels(proxy: TestClient[Any, Any]) -> None:
    base = str(proxy.make_url("")).rstrip("/")
    body = await json_of(await proxy.get("/api/channels"), 200)
    channels = body["channels"]
    assert [c["number"] for c in channels] == ["4.1", "4.2", "5", "7", "10", "12"]
    first = channels[0]
    assert first["id"] == 7181 and first["name"] == "WXYZ-HD" and first["kind"] == "tv"
    assert first["groups"] == ["Favourites", "News"]
    assert first["icon_url"] == f"{base}/icons/7181"
    assert first["hls_url"] == f"{base}/live/7181.m3u8" and first["ts_url"] == f"{base}/live/7181.ts"
    assert channels[4]["kind"] == "radio"
    assert channels[5]["icon_url"] is None and channels[5]["groups"] == []


async def test_guide_by_epoch_and_iso(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    now = int(time.time())
    start, end = now + 3600, now + 6 * 3600
    body = await json_of(await proxy.get("/api/guide", params={"channel_id": "7181", "start": str(start),
                                                                "end": str(end)}), 200)
    channel = channel_by_oid(7181)
    assert channel is not None
    want = emulator.state.guide.listings(channel, now, start, end)
    assert [(x["event_id"], x["start"], x["end"], x["title"]) for x in body["listings"]] == \
        [(p.event_id, p.start, p.end, p.name) for p in want]
    first = body["listings"][0]
    assert first["genres"] == list(want[0].genres)
    zulu = "%Y-%m-%dT%H:%M:%SZ"
    assert first["start_utc"] == dt.datetime.fromtimestamp(want[0].start, dt.UTC).strftime(zulu)

    iso_start = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    iso_end = dt.datetime.fromtimestamp(end, dt.UTC).replace(tzinfo=None).isoformat()  # no zone: UTC
    iso = await json_of(await proxy.get("/api/guide", params={"channel_id": "7181", "start": iso_start,
                                                               "end": iso_end}), 200)
    assert iso["listings"] == body["listings"]
    default = await json_of(await proxy.get("/api/guide", params={"channel_id": "7181"}), 200)
    assert default["end"] - default["start"] == 86400


@pytest.mark.parametrize(("params", "field"), [
    ({}, "channel_id"),
    ({"channel_id": "x"}, "channel_id"),
    ({"channel_id": "7181", "start": "yesterday"}, "start"),
    ({"channel_id": "7181", "start": "2025-13-01T00:00:00"}, "start"),
    ({"channel_id": "7181", "start": "1e300"}, "start"),
    ({"channel_id": "7181", "start": "1735732800", "end": "1735732800"}, "end"),
    ({"channel_id": "7181", "start": "1735732800", "end": "1737000000"}, "end"),
])
async def test_guide_rejects_bad_input_naming_the_field(
    proxy: TestClient[Any, Any], params: dict[str, str], field: str
) -> None:
    body = await json_of(await proxy.get("/api/guide", params=params), 400)
    assert body["error"] == "bad_request" and body["field"] == field
    assert field in body["message"]


async def test_guide_of_unknown_channel_is_404(proxy: TestClient[Any, Any]) -> None:
    body = await json_of(await proxy.get("/api/guide", params={"channel_id": "4242"}), 404)
    assert body["error"] == "channel_not_found"


async def test_recordings_by_filter(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    now = time.time()
    by_status: dict[str, set[int]] = {}
    for rec in emulator.state.store.recordings.values():
        by_status.setdefault(rec.status(now), set()).add(rec.id)
    assert set(by_status) == {"pending", "recording", "ready", "failed", "conflict"}
    base = str(proxy.make_url("")).rstrip("/")
    for status, ids in by_status.items():
        body = await json_of(await proxy.get("/api/recordings", params={"filter": status}), 200)
        assert {r["id"] for r in body["recordings"]} == ids, status
        assert {r["status"] for r in body["recordings"]} == {status}
        for rec in body["recordings"]:
            playable = status in ("ready", "recording")
            assert rec["url"] == (f"{base}/recordings/{rec['id']}" if playable else None)
    everything = await json_of(await proxy.get("/api/recordings"), 200)
    assert {r["id"] for r in everything["recordings"]} == set().union(*by_status.values())
    one = next(iter(by_status["ready"]))
    single = await json_of(await proxy.get(f"/api/recordings/{one}"), 200)
    assert single["id"] == one and single["status"] == "ready"
    await json_of(await proxy.get("/api/recordings/999999"), 404)
    bad = await json_of(await proxy.get("/api/recordings", params={"filter": "upcoming"}), 400)
    assert bad["field"] == "filter"


async def test_writes_are_off_without_an_admin_key(proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    before = await emulator_recordings(emulator)
    some_id = next(iter(before))
    for resp in (await proxy.post("/api/recordings", json={"event_id": 1}, headers={"X-API-Key": "x" * 10}),
                 await proxy.delete(f"/api/recordings/{some_id}")):
        body = await json_of(resp, 403)
        assert "auth.admin_key" in body["message"]
    assert await emulator_recordings(emulator) == before


async def test_writes_need_the_right_admin_key(admin_proxy: TestClient[Any, Any], emulator: Emulator) -> None:
    before = await emulator_recordings(emulator)
    some_id = next(iter(before))
    prog = future_programme(emulator)
    attempts = [
        ({}, 401),
        ({"X-API-Key": "wrong-key-123"}, 401),
        ({"Authorization": "Bearer wrong-key-123"}, 401),
        ({"Authorization": f"Basic {ADMIN}"}, 401),
    ]
    for headers, status in attempts:
        resp = await admin_proxy.post("/api/recordings", json={"event_id": prog.event_id}, headers=headers)
        body = await json_of(resp, status)
        assert body["error"] == "auth_required"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert ADMIN not in await resp.text()
        await json_of(await admin_proxy.delete(f"/api/recordings/{some_id}", headers=headers), status)
    assert await emulator_recordings(emulator) == before


async def test_schedule_by_event_applies_configured_padding_and_delete_removes_it(
    admin_proxy: TestClient[Any, Any], emulator: Emulator
) -> None:
    prog = future_programme(emulator)
    resp = await admin_proxy.post("/api/recordings", json={"event_id": prog.event_id},
                                  headers={"X-API-Key": ADMIN})
    body = await json_of(resp, 201)
    rec_id = body["recording"]["id"]
    assert resp.headers["Location"] == f"/api/recordings/{rec_id}"
    assert body["recording"]["status"] == "pending"

    listed = (await emulator_recordings(emulator))[rec_id]
    assert listed["epg_event_oid"] == str(prog.event_id)
    assert listed["name"] == prog.name
    assert (listed["pre_padding"], listed["post_padding"]) == (str(PRE), str(POST))
    assert listed["start_time_ticks"] == str(prog.start)

    bearer = {"Authorization": f"Bearer {ADMIN}"}
    deleted = await admin_proxy.delete(f"/api/recordings/{rec_id}", headers=bearer)
    assert (await json_of(deleted, 200)) == {"deleted": rec_id}
    assert rec_id not in await emulator_recordings(emulator)
    again = await admin_proxy.delete(f"/api/recordings/{rec_id}", headers={"X-API-Key": ADMIN})
    assert (await json_of(again, 404))["error"] == "recording_not_found"


async def test_schedule_by_channel_and_time_with_explicit_padding(
    admin_proxy: TestClient[Any, Any], emulator: Emulator
) -> None:
    start = (int(time.time()) // 60 + 24 * 60) * 60  # a whole minute, a day ahead
    iso = dt.datetime.fromtimestamp(start, dt.UTC).isoformat()
    payload = {"channel_id": 7184, "start": iso, "duration": 1800, "name": "Cup Final",
               "pre_padding": 0, "post_padding": 15}
    resp = await admin_proxy.post("/api/recordings", json=payload, headers={"X-API-Key": ADMIN})
    body = await json_of(resp, 201)
    rec_id = body["recording"]["id"]
    listed = (await emulator_recordings(emulator))[rec_id]
    assert listed["name"] == "Cup Final" and listed["channel_id"] == "7184"
    assert listed["start_time_ticks"] == str(start) and listed["duration_seconds"] == "1800"
    assert (listed["pre_padding"], listed["post_padding"]) == ("0", "15")


@pytest.mark.parametrize(("payload", "field"), [
    ({"event_id": "abc"}, "event_id"),
    ({"event_id": True}, "event_id"),
    ({}, "channel_id"),
    ({"channel_id": 7184, "duration": 600}, "start"),
    ({"channel_id": 7184, "start": "soon", "duration": 600}, "start"),
    ({"channel_id": 7184, "start": 1000, "duration": 600}, "start"),  # ends in the past
    ({"channel_id": 7184, "start": "2099-01-01T00:00:00Z", "duration": 0}, "duration"),
    ({"channel_id": 7184, "start": "2099-01-01T00:00:00Z", "duration": 600, "name": ""}, "name"),
    ({"channel_id": 7184, "start": "2099-01-01T00:00Z", "duration": 600, "pre_padding": -1}, "pre_padding"),
    ({"event_id": 5, "channel_id": 7184}, "channel_id"),
    ({"event_id": 5, "colour": "red"}, "colour"),
    ([1, 2], "body"),
])
async def test_schedule_rejects_bad_input_naming_the_field(
    admin_proxy: TestClient[Any, Any], emulator: Emulator, payload: Any, field: str
) -> None:
    before = await emulator_recordings(emulator)
    resp = await admin_proxy.post("/api/recordings", json=payload, headers={"X-API-Key": ADMIN})
    body = await json_of(resp, 400)
    assert body["field"] == field, body
    assert await emulator_recordings(emulator) == before


async def test_schedule_refused_by_nextpvr_is_400(
    admin_proxy: TestClient[Any, Any], emulator: Emulator
) -> None:
    channel = CHANNELS[0]
    past = emulator.state.guide.at(channel, time.time() - 6 * 3600)  # NextPVR refuses what has ended
    body = await json_of(await admin_proxy.post("/api/recordings", json={"event_id": past.event_id},
                                                headers={"X-API-Key": ADMIN}), 400)
    assert body["field"] == "event_id" and "NextPVR" in body["message"]
    manual = {"channel_id": 4242, "start": "2099-01-01T00:00:00", "duration": 600}
    unknown = await admin_proxy.post("/api/recordings", json=manual, headers={"X-API-Key": ADMIN})
    await json_of(unknown, 404)


async def test_garbage_and_oversized_bodies(admin_proxy: TestClient[Any, Any]) -> None:
    headers = {"X-API-Key": ADMIN, "Content-Type": "application/json"}
    resp = await admin_proxy.post("/api/recordings", data=b"{not json", headers=headers)
    garbage = await json_of(resp, 400)
    assert garbage["field"] == "body"
    big = b'{"name": "' + b"x" * 100_000 + b'"}'
    huge = await admin_proxy.post("/api/recordings", data=big, headers=headers)
    assert (await json_of(huge, 413))["error"] == "body_too_large"
