"""The NextPVR emulator's /service API: envelopes, login, code 8, every method in both formats,
transcodes and their expiry, the control API and the API-side fault hooks."""

from __future__ import annotations

import asyncio
import json
import re
import time
import xml.etree.ElementTree as ET
from typing import Any

import m3u8  # test oracle: reads the emulator's playlists
import pytest
from aiohttp import web
from yarl import URL

from proxy.emulator import EmulatorConfig
from proxy.emulator.api import expected_login_hash
from proxy.emulator.hls import window
from tests.emulator_client import DECLARATION, EMU_PIN, MakeEmu, login_hash
from tests.emulator_client import EmuClient as Emu

PIN = EMU_PIN
INVALID_ARGS = {"stat": "Failed", "code": 2, "msg": "Invalid Args."}


@pytest.fixture
def make_emu(make_emu_client: MakeEmu) -> MakeEmu:
    return make_emu_client


@web.middleware
async def from_afar(request: web.Request, handler: Any) -> web.StreamResponse:
    """Make every request look as if it came from a public address (TEST-NETs count as private)."""
    response: web.StreamResponse = await handler(request.clone(remote="93.184.216.34"))
    return response


@pytest.fixture
async def emu(make_emu: MakeEmu) -> Emu:
    e = await make_emu()
    await e.login()
    return e


# -- sessions ---------------------------------------------------------------------------------------------
def test_login_hash_matches_the_documented_test_vector() -> None:
    assert (
        expected_login_hash("0000", "95f4f028-e9a3-470a-a86c-142037098dad")
        == "ce0c9a50173691581c67a42d4a58d7df"
    )


async def test_initiate_mints_sid_and_salt_in_the_exact_envelope(make_emu: MakeEmu) -> None:
    e = await make_emu()
    status, _, body = await e.raw("session.initiate", ver="1.0", device="x")
    assert status == 200
    assert body.startswith(DECLARATION + '<rsp stat="ok">\n  <sid>')
    root = ET.fromstring(body)
    assert re.fullmatch(r"[0-9a-f]{32}", root.findtext("sid", ""))
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", root.findtext("salt", "")
    )
    assert root.findtext("sid") in e.state.issued_sids
    _, _, body = await e.raw("session.initiate", format="json")
    data = json.loads(body)
    assert data["stat"] == "ok" and len(data["sid"]) == 32 and data["salt"].count("-") == 4
    assert e.state.counters.session_initiates == 2


@pytest.mark.parametrize("upper", [False, True])
async def test_login_with_the_right_pin_in_either_hex_case(make_emu: MakeEmu, upper: bool) -> None:
    e = await make_emu()
    await e.login(upper=upper)
    assert (await e.xml("session.valid")).get("stat") == "ok"
    assert e.state.counters.logins_ok == 1


async def test_login_with_a_wrong_pin_fails_at_http_200(make_emu: MakeEmu) -> None:
    e = await make_emu()
    root = ET.fromstring((await e.raw("session.initiate"))[2])
    sid, salt = root.findtext("sid", ""), root.findtext("salt", "")
    status, _, body = await e.raw("session.login", sid=sid, md5=login_hash("0000", salt))
    assert status == 200
    failed = ET.fromstring(body)
    assert failed.get("stat") == "fail" and failed.find("err") is not None
    # the unauthenticated sid stays useless
    status, _, body = await e.raw("channel.list", sid=sid)
    assert ET.fromstring(body).find("err").get("code") == "8"  # type: ignore[union-attr]
    assert e.state.counters.logins_failed == 1 and e.state.counters.logins_ok == 0


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"pin": "0000", "refuse_remote_default_pin": True}, "Remote login attempt with default credentials"),
        ({"remote_access": False}, "Remote access is not enabled"),
        ({"pin": "0000"}, None),
    ],
)
async def test_remote_login_refusals(
    make_emu_client: MakeEmu, settings: dict[str, Any], refusal: str | None
) -> None:
    # the emulator's own default PIN unless the case names one
    e = await make_emu_client(middlewares=[from_afar], **{"pin": "0000", **settings})
    keys = json.loads((await e.raw("session.initiate", format="json"))[2])
    digest = login_hash(settings.get("pin", "0000"), keys["salt"])
    answer = json.loads((await e.raw("session.login", sid=keys["sid"], md5=digest, format="json"))[2])
    if refusal is None:
        assert answer == {"stat": "ok", "sid": keys["sid"]}
    else:
        assert answer["stat"] == "fail" and answer["msg"] == refusal


async def test_inferred_behaviours_are_configurable(make_emu: MakeEmu) -> None:
    e = await make_emu(icons_without_sid=True, json_list_stat=True, delete_unknown_ok=False)
    status, ctype, _ = await e.raw("channel.icon", channel_id=7181)
    assert status == 200 and ctype == "image/png"
    await e.login()
    assert (await e.json("channel.list"))["stat"] == "ok"
    assert await e.json("recording.delete", recording_id=424242) == INVALID_ARGS
    strict = await make_emu(recordings_use_tuners=True, tuners=1)
    await strict.login()
    assert strict.state.tuners_in_use == 1  # the recording in progress
    refused = await strict.json("channel.transcode.initiate", channel_id=7181, profile="720p")
    assert refused["stat"] == "fail"


async def test_services_service_path_is_the_same_api(emu: Emu) -> None:
    status, _, body = await emu.raw("channel.list", path="/services/service", sid=emu.sid)
    assert status == 200 and "<channels>" in body


@pytest.mark.parametrize(
    "method",
    [
        "channel.list",
        "channel.listings",
        "recording.list",
        "setting.list",
        "system.status",
        "channel.transcode.m3u8",
        "channel.transcode.initiate",
        "session.valid",
        "channel.icon",
    ],
)
async def test_code_8_on_a_bad_sid_in_both_formats(make_emu: MakeEmu, method: str) -> None:
    e = await make_emu(code8_message="Not logged in (emulated)")
    for sid in ("", "0" * 32, "not-a-sid"):
        status, _, body = await e.raw(method, sid=sid, channel_id=7181)
        assert status == 200
        err = ET.fromstring(body).find("err")
        assert err is not None and err.get("code") == "8" and err.get("msg") == "Not logged in (emulated)"
        status, _, body = await e.raw(method, sid=sid, format="json")
        assert status == 200
        assert json.loads(body) == {"stat": "fail", "code": 8, "msg": "Not logged in (emulated)"}


async def test_lastupdated_answers_without_a_sid_and_moves_on_every_mutation(emu: Emu) -> None:
    status, _, body = await emu.raw("recording.lastupdated")
    assert status == 200
    first = int(ET.fromstring(body).findtext("last_update", "0"))
    assert first > 1_600_000_000
    stamps = [first]
    prog = (await emu.json("channel.listings", channel_id=7183, start=int(time.time()) + 7200))["listings"][0]
    for method, params in [
        ("recording.save", {"event_id": prog["id"]}),
        ("recording.save", {"event_id": prog["id"], "pre_padding": 5}),
        ("recording.delete", {"recording_id": 869}),
    ]:
        assert (await emu.json(method, **params))["stat"] == "ok"
        stamps.append((await emu.json("recording.lastupdated"))["last_update"])
    assert stamps == sorted(set(stamps)), stamps


async def test_session_logout_and_expiry(make_emu: MakeEmu) -> None:
    e = await make_emu(session_expiry=0.3)
    await e.login()
    assert (await e.xml("session.logout")).get("stat") == "ok"
    assert (await e.xml("session.valid")).get("stat") == "fail"
    await e.login()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # sliding: steady use keeps it alive past its idle expiry
        assert (await e.xml("session.valid")).get("stat") == "ok"
        await asyncio.sleep(0.05)
    await e.state.wait_for(lambda: not e.state.sessions, 3)
    assert (await e.xml("session.valid")).find("err").get("code") == "8"  # type: ignore[union-attr]


async def test_expire_sessions_hook(emu: Emu) -> None:
    assert emu.state.expire_sessions() == 1
    assert (await emu.xml("channel.list")).find("err").get("code") == "8"  # type: ignore[union-attr]


# -- formats ----------------------------------------------------------------------------------------------
async def test_json_by_accept_header_and_format_param_wins(emu: Emu) -> None:
    jellyfin = {"Accept": "application/json, application/xml;q=0.9, */*;q=0.8"}
    _, ctype, body = await emu.raw("channel.groups", headers=jellyfin, sid=emu.sid)
    assert ctype.startswith("application/json") and body.startswith('{"groups":')
    _, ctype, body = await emu.raw("channel.groups", headers=jellyfin, sid=emu.sid, format="xml")
    assert ctype.startswith("text/xml") and "<groups>" in body
    _, ctype, _ = await emu.raw("channel.groups", headers={"Accept": "application/xml"}, sid=emu.sid)
    assert ctype.startswith("text/xml")


async def test_unknown_method_is_a_failure_at_http_200(make_emu: MakeEmu) -> None:
    e = await make_emu(unknown_method_code=42)
    await e.login()
    assert await e.json("guide.list") == {"stat": "fail", "code": 42, "msg": "Unknown method."}


# -- channels and EPG -------------------------------------------------------------------------------------
async def test_channel_list_in_both_formats(emu: Emu) -> None:
    channels = (await emu.xml("channel.list")).findall("channels/channel")
    assert len(channels) >= 5
    by_number = {c.findtext("formatted-number"): c for c in channels}
    assert {"4.1", "4.2", "5", "7", "10"} <= set(by_number)
    assert by_number["4.1"].findtext("minor") == "1" and by_number["4.1"].findtext("type") == "0x1"
    assert by_number["10"].findtext("type") == "0xa"
    assert "false" in {c.findtext("icon") for c in channels}
    data = (await emu.json("channel.list"))["channels"]
    radio = next(c for c in data if c["channelNumberFormated"] == "10")
    assert radio["channelType"] == 10 and isinstance(radio["channelId"], int)
    assert {c["channelType"] for c in data} == {1, 10}
    assert "stat" not in await emu.json("channel.list")  # list bodies leave stat out


async def test_channel_group_filter_and_groups(emu: Emu) -> None:
    everything = await emu.json("channel.list")
    assert await emu.json("channel.list", group_id="All Channels") == everything
    favourites = (await emu.json("channel.list", group_id="Favourites"))["channels"]
    assert 0 < len(favourites) < len(everything["channels"])
    assert (await emu.json("channel.list", group_id="nope"))["channels"] == []
    groups = (await emu.json("channel.groups"))["groups"]
    assert "Favourites" in groups and all(isinstance(g, str) for g in groups)
    names = [g.findtext("name") for g in (await emu.xml("channel.groups")).findall("groups/group")]
    assert names == groups
    extras = (await emu.xml("channel.list", extras="true")).findall("channels/channel")
    assert any(c.find("groups") is not None and not list(c.find("groups")) for c in extras)  # type: ignore[arg-type]


async def test_channel_icon_png_or_404(emu: Emu) -> None:
    channels = (await emu.json("channel.list"))["channels"]
    with_icon = next(c for c in channels if c["channelIcon"])
    without = next(c for c in channels if not c["channelIcon"])
    async with emu.client.get(
        "/service", params={"method": "channel.icon", "channel_id": with_icon["channelId"], "sid": emu.sid}
    ) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert (await resp.read()).startswith(b"\x89PNG\r\n\x1a\n")
    status, _, _ = await emu.raw("channel.icon", channel_id=without["channelId"], sid=emu.sid)
    assert status == 404


async def test_listings_ms_in_xml_seconds_in_json_and_filtered(emu: Emu) -> None:
    now = int(time.time())
    start, end = now, now + 6 * 3600
    xml_rows = (await emu.xml("channel.listings", channel_id=7181, start=start, end=end)).findall(
        "listings/l"
    )
    json_rows = (await emu.json("channel.listings", channel_id=7181, start=start, end=end))["listings"]
    assert len(xml_rows) == len(json_rows) >= 3
    for x, j in zip(xml_rows, json_rows, strict=True):
        assert int(x.findtext("start", "")) == j["start"] * 1000 and len(x.findtext("start", "")) == 13
        assert int(x.findtext("end", "")) == j["end"] * 1000
        assert x.findtext("id") == str(j["id"]) and x.findtext("name") == j["name"]
        assert j["end"] > start and j["start"] < end
    assert json_rows[0]["start"] <= now < json_rows[0]["end"]
    everything = (await emu.json("channel.listings", channel_id=7184))["listings"]
    assert everything[0]["start"] <= now - 86400 and everything[-1]["end"] >= now + 8 * 86400
    assert everything == (await emu.json("channel.listings", channel_id=7184))["listings"]  # deterministic
    assert any(p.get("season") and p.get("episode") and p["subtitle"] for p in everything)
    assert all(p["genres"] for p in everything)
    assert await emu.json("channel.listings") == INVALID_ARGS


async def test_listings_current(emu: Emu) -> None:
    channels = (await emu.xml("channel.listings.current")).findall("listings/channel")
    assert len(channels) >= 5 and all(c.get("id") and len(c.findall("l")) == 2 for c in channels)


# -- recordings -------------------------------------------------------------------------------------------
async def test_recording_list_filters_and_status_case(emu: Emu) -> None:
    every = (await emu.json("recording.list", filter="all"))["recordings"]
    assert {r["status"] for r in every} == {"ready", "recording", "pending", "failed", "conflict"}
    xml_statuses = {
        r.findtext("status") for r in (await emu.xml("recording.list", filter="all")).iter("recording")
    }
    assert xml_statuses == {"Ready", "Recording", "Pending", "Failed", "Conflict"}
    for name in ("ready", "Ready", "pending", "recording", "failed", "conflict"):
        rows = (await emu.json("recording.list", filter=name))["recordings"]
        assert rows and {r["status"] for r in rows} == {name.lower()}
    ready = (await emu.json("recording.list", filter="ready"))["recordings"][0]
    assert ready["duration"] == 60 and ready["size"] > 100_000 and ready["file"].endswith(".ts")
    one = (await emu.json("recording.list", recording_id=ready["id"]))["recordings"]
    assert [r["id"] for r in one] == [ready["id"]]
    row = next(r for r in (await emu.xml("recording.list", recording_id=ready["id"])).iter("recording"))
    assert row.findtext("duration_seconds") == "60" and row.findtext("duration") == "00:01"
    assert row.findtext("start_time_ticks") == str(ready["startTime"])
    assert await emu.json("recording.list", filter="bogus") == INVALID_ARGS


async def test_recording_save_delete_and_bad_args(emu: Emu) -> None:
    prog = (await emu.json("channel.listings", channel_id=7182, start=int(time.time()) + 3 * 3600))[
        "listings"
    ][0]
    assert await emu.json("recording.save", event_id=prog["id"], pre_padding=2, post_padding=3) == {
        "stat": "ok"
    }
    pending = (await emu.json("recording.list", filter="pending"))["recordings"]
    saved = next(r for r in pending if r["epgEventId"] == prog["id"])
    assert (saved["prePadding"], saved["postPadding"], saved["startTime"]) == (2, 3, prog["start"])
    listed = (await emu.json("channel.listings", channel_id=7182, start=prog["start"], end=prog["end"]))[
        "listings"
    ]
    assert listed[0]["recordingStatus"] == "pending" and listed[0]["recordingId"] == saved["id"]
    start = int(time.time()) + 600
    assert (await emu.json("recording.save", name="Manual", channel=7181, time_t=start, duration=1800))[
        "stat"
    ] == "ok"
    manual = next(
        r for r in (await emu.json("recording.list", filter="pending"))["recordings"] if r["name"] == "Manual"
    )
    assert (manual["startTime"], manual["duration"], manual["channelId"]) == (start, 1800, 7181)
    assert await emu.json("recording.delete", recording_id=manual["id"]) == {"stat": "ok"}
    assert (await emu.json("recording.list", recording_id=manual["id"]))["recordings"] == []
    assert await emu.json("recording.save") == INVALID_ARGS
    assert await emu.json("recording.save", channel=7181, time_t="soon", duration=60) == INVALID_ARGS
    assert await emu.json("recording.save", event_id=1) == INVALID_ARGS
    assert await emu.json("recording.delete") == INVALID_ARGS
    failed = ET.fromstring((await emu.raw("recording.save", sid=emu.sid))[2])
    assert failed.get("stat") == "Failed" and failed.find("err").get("code") == "2"  # type: ignore[union-attr]


async def test_recurring_rules(emu: Emu) -> None:
    rules = (await emu.json("recording.recurring.list"))["recurrings"]
    assert rules and {"channelID", "epgTitle", "prePadding"} <= set(rules[0])
    prog = (await emu.json("channel.listings", channel_id=7183, start=int(time.time()) + 3600))["listings"][0]
    assert await emu.json("recording.recurring.save", event_id=prog["id"]) == {"stat": "ok"}
    rule = (await emu.json("recording.recurring.list"))["recurrings"][-1]
    assert rule["name"] == prog["name"]
    children = [
        r
        for r in (await emu.json("recording.list", filter="pending"))["recordings"]
        if r["recurringParent"] == rule["id"]
    ]
    assert children and all(r["name"] == prog["name"] for r in children)
    xml_rules = (await emu.xml("recording.recurring.list")).findall("recurrings/recurring")
    assert xml_rules[-1].findtext("matchrules/Rules/EPGTitle") == prog["name"]
    # "neither event_id or start_time/end_time specified"
    assert await emu.json("recording.recurring.save", name="x") == INVALID_ARGS
    assert await emu.json("recording.recurring.delete", recurring_id=rule["id"]) == {"stat": "ok"}
    assert all(
        r["recurringParent"] != rule["id"]
        for r in (await emu.json("recording.list", filter="pending"))["recordings"]
    )
    assert await emu.json("recording.recurring.delete", recurring_id=rule["id"]) == INVALID_ARGS


async def test_watched_set_edl_and_resume_stamp(emu: Emu) -> None:
    ready = (await emu.json("recording.list", filter="ready"))["recordings"][0]
    plain = (await emu.json("recording.lastupdated", ignore_resume="true"))["last_update"]
    assert await emu.json("recording.watched.set", recording_id=ready["id"], position=0) == {"stat": "ok"}
    assert (await emu.json("recording.list", recording_id=ready["id"]))["recordings"][0][
        "playbackPosition"
    ] == 0
    assert await emu.json("recording.watched.set", recording_id=ready["id"], position=30) == {"stat": "ok"}
    assert (await emu.json("recording.list", recording_id=ready["id"]))["recordings"][0][
        "playbackPosition"
    ] == 30
    assert (await emu.json("recording.lastupdated", ignore_resume="true"))["last_update"] == plain
    assert (await emu.json("recording.lastupdated"))["last_update"] > plain
    assert (await emu.xml("recording.edl", recording_id=ready["id"])).find("commercials") is not None


# -- settings and system ----------------------------------------------------------------------------------
async def test_settings(emu: Emu) -> None:
    root = await emu.xml("setting.list")
    assert root.findtext("NextPVRVersion") == "70103"
    assert abs(int(root.findtext("TimeEpoch", "0")) - time.time()) < 5
    assert root.findtext("PrePadding") == "1" and root.findtext("PostPadding") == "2"
    data = await emu.json("setting.list")
    assert data["nextPVRVersion"] == 70103 and isinstance(data["timeEpoch"], int)
    assert (await emu.json("setting.get", key="/Settings/Recording/RecordingDirectory"))["value"]
    assert (await emu.xml("setting.get", key="/Settings/Nope")).findtext("value") == ""
    assert await emu.json("setting.get") == INVALID_ARGS


async def test_system_status_shows_the_tuner_pool(make_emu: MakeEmu) -> None:
    e = await make_emu(tuners=3)
    await e.login()
    devices = list((await e.xml("system.status")).iter("Device"))
    assert len(devices) == 3 and all(d.get("oid") and d.get("identifier") for d in devices)
    assert any(d.find("Recording") is not None for d in devices)  # the recording in progress
    assert (await e.json("channel.transcode.initiate", channel_id=7181, profile="720p"))["stat"] == "ok"
    live = [
        d.findtext("LiveTV")
        for d in (await e.xml("system.status")).iter("Device")
        if d.find("LiveTV") is not None
    ]
    assert len(live) == 1 and live[0].startswith("/config/livetvbuffer/live-")  # type: ignore[union-attr]
    assert len((await e.json("system.status"))["devices"]) == 3
    spaces = (await e.xml("system.space")).findall("directory")
    assert spaces and spaces[0].get("name") and int(spaces[0].findtext("free", "0")) > 0


# -- transcodes -------------------------------------------------------------------------------------------
def _playlist_uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def _m3u8(emu: Emu, method: str = "channel.transcode.m3u8") -> str:
    status, ctype, body = await emu.raw(method, sid=emu.sid)
    assert status == 200, body
    assert ctype.lower().startswith("application/x-mpegurl")
    return body


async def _until_ready(emu: Emu, prefix: str = "channel") -> list[ET.Element]:
    polls = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        root = await emu.xml(f"{prefix}.transcode.status")
        polls.append(root)
        if root.findtext("final") == "true":
            return polls
        await asyncio.sleep(0.02)
    raise AssertionError("transcode never became ready")


async def test_transcode_lifecycle(make_emu: MakeEmu) -> None:
    e = await make_emu(transcode_ready_seconds=0.3, initial_segments=3, playlist_window=3, tuners=2)
    await e.login()
    assert (await e.json("channel.transcode.initiate", channel_id=7181, profile="720p", force="true"))[
        "stat"
    ] == "ok"
    assert e.state.transcodes_active == 1 and e.state.tuners_in_use == 1
    polls = await _until_ready(e)
    percentages = [int(p.findtext("percentage", "-1")) for p in polls]
    assert percentages == sorted(percentages) and percentages[-1] == 100
    assert all(p.findtext("final") == "false" for p in polls[:-1])
    assert (await e.json("channel.transcode.status")) == {"stat": "ok", "percentage": 100, "final": True}
    playlist = await _m3u8(e)
    assert playlist.startswith("#EXTM3U\n") and "#EXT-X-TARGETDURATION:1" in playlist
    parsed = m3u8.loads(playlist)
    assert parsed.media_sequence in (0, None) and not parsed.is_endlist  # an absent tag means 0
    assert [seg.duration for seg in parsed.segments] == [1.0, 1.0, 1.0] and len(_playlist_uris(playlist)) == 3
    assert all(e.sid in uri for uri in _playlist_uris(playlist))
    timing = e.state.transcode_history[-1]
    assert timing.first_playlist_at is not None and timing.first_playlist_at >= timing.ready_at
    # the window slides with the clock
    transcode = e.state.transcodes[e.sid]
    await e.state.wait_for(lambda: window(e.state, transcode).first > 0, 6)
    playlist = await _m3u8(e)
    assert (m3u8.loads(playlist).media_sequence or 0) > 0 and len(_playlist_uris(playlist)) == 3
    # a second initiate on the same sid replaces the first
    assert (await e.json("channel.transcode.initiate", channel_id=7183, profile="480p"))["stat"] == "ok"
    assert e.state.transcodes_active == 1 and e.state.tuners_in_use == 1
    assert e.state.counters.transcodes_replaced == 1
    assert await e.json("channel.transcode.lease") == {"stat": "ok"}
    assert await e.json("channel.transcode.stop") == {"stat": "ok"}
    assert e.state.transcodes_active == 0 and e.state.tuners_in_use == 0
    status, _, _ = await e.raw("channel.transcode.m3u8", sid=e.sid)
    assert status == 404  # valid sid, no transcode
    status, _, _ = await e.raw("channel.transcode.lease", sid=e.sid)
    assert status == 404
    assert (await e.json("channel.transcode.status"))["stat"] == "fail"


async def test_transcode_refusals(make_emu: MakeEmu) -> None:
    e = await make_emu(tuners=1)
    await e.login()
    status, _, body = await e.raw("channel.transcode.initiate", sid=e.sid, channel_id=7181, profile="9000p")
    assert status == 200 and ET.fromstring(body).get("stat") == "fail"
    assert e.state.tuners_in_use == 0
    assert await e.json("channel.transcode.initiate", channel_id=1, profile="720p") == INVALID_ARGS
    assert (await e.json("channel.transcode.initiate", channel=4.2, profile="720p"))["stat"] == "ok"
    other = Emu(e.client, e.state)
    await other.login()
    refused = await other.json("channel.transcode.initiate", channel_id=7183, profile="720p")
    assert refused["stat"] == "fail" and "No tuner" in refused["msg"]
    assert e.state.counters.tuner_refusals == 1


async def test_transcode_expires_without_requests(make_emu: MakeEmu) -> None:
    e = await make_emu(transcode_expiry=0.4)
    await e.login()
    await e.json("channel.transcode.initiate", channel_id=7181, profile="720p")
    await _until_ready(e)
    uri = _playlist_uris(await _m3u8(e))[0]
    await e.state.wait_for(lambda: e.state.transcodes_active == 0, 5)
    assert e.state.counters.transcodes_expired == 1 and e.state.tuners_in_use == 0
    async with e.client.get(URL("/service").join(URL(uri))) as resp:
        assert resp.status == 404


async def test_transcode_kept_alive_by_lease(make_emu: MakeEmu) -> None:
    e = await make_emu(transcode_expiry=0.4)
    await e.login()
    await e.json("channel.transcode.initiate", channel_id=7181, profile="720p")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert await e.json("channel.transcode.lease") == {"stat": "ok"}
        await asyncio.sleep(0.05)
    assert e.state.transcodes_active == 1 and e.state.counters.transcodes_expired == 0


@pytest.mark.parametrize("style", ["relative", "query", "absolute"])
async def test_each_segment_uri_style_resolves(make_emu: MakeEmu, style: str) -> None:
    e = await make_emu(segment_uri_style=style)
    await e.login()
    await e.json("channel.transcode.initiate", channel_id=7182, profile="720p")
    await _until_ready(e)
    fetched = 0
    for path in ("/service", "/services/service"):
        status, _, playlist = await e.raw("channel.transcode.m3u8", path=path, sid=e.sid)
        assert status == 200
        uris = _playlist_uris(playlist)
        assert uris and all(e.sid in u for u in uris)
        if style == "absolute":
            assert all(u.startswith("http://") for u in uris)
        elif style == "query":
            assert all(u.startswith("?method=channel.transcode.segment&") for u in uris)
        else:
            assert all(u.startswith("transcode/") for u in uris)
        base = e.client.make_url(path).with_query({"method": "channel.transcode.m3u8", "sid": e.sid})
        for uri in uris:
            async with e.client.session.get(base.join(URL(uri))) as resp:
                assert resp.status == 200 and resp.content_type == "video/mp2t"
                body = await resp.read()
                assert body[0] == 0x47 and len(body) % 188 == 0
            fetched += 1
    assert e.state.counters.segment_requests == fetched
    assert sum(e.state.segment_fetches.values()) == fetched


async def test_a_later_transcode_starts_later_in_the_channel(make_emu: MakeEmu) -> None:
    e = await make_emu(transcode_ready_seconds=0)
    await e.login()
    await e.json("channel.transcode.initiate", channel_id=7184, profile="720p")
    channel = e.state.transcodes[e.sid].channel
    started_at = e.state.feeds.index_at(channel)
    await e.state.wait_for(lambda: e.state.feeds.index_at(channel) > started_at, 5)
    other = Emu(e.client, e.state)
    await other.login()
    await other.json("channel.transcode.initiate", channel_id=7184, profile="720p")

    async def segments(who: Emu) -> list[bytes]:
        base = e.client.make_url("/service").with_query({"sid": who.sid})
        out = []
        for uri in _playlist_uris(await _m3u8(who)):
            async with e.client.session.get(base.join(URL(uri))) as resp:
                assert resp.status == 200
                out.append(await resp.read())
        return out

    later = (await segments(other))[0]
    earlier = await segments(e)
    assert later != earlier[0] and later in earlier[1:]


async def test_recording_transcode_is_a_vod_playlist(make_emu: MakeEmu) -> None:
    e = await make_emu(recording_seconds=10, segment_seconds=2)
    await e.login()
    ready = (await e.json("recording.list", filter="ready"))["recordings"][0]
    assert (await e.json("recording.transcode.initiate", recording_id=ready["id"], profile="720p"))[
        "stat"
    ] == "ok"
    await _until_ready(e, "recording")
    playlist = await _m3u8(e, "recording.transcode.m3u8")
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist and playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert len(_playlist_uris(playlist)) == 5
    pending = (await e.json("recording.list", filter="pending"))["recordings"][0]
    assert (
        await e.json("recording.transcode.initiate", recording_id=pending["id"], profile="720p")
        == INVALID_ARGS
    )
    assert await e.json("recording.transcode.stop") == {"stat": "ok"}


async def test_timeshift_info_is_raw_map_xml(emu: Emu) -> None:
    status, _, _ = await emu.raw("channel.stream.info", sid=emu.sid)
    assert status == 404
    assert (await emu.json("channel.stream.start", channel_id=7181))["stat"] == "ok"
    assert emu.state.tuners_in_use == 1
    for fmt in ("xml", "json"):
        status, _, body = await emu.raw("channel.stream.info", sid=emu.sid, format=fmt)
        root = ET.fromstring(body)
        assert root.tag == "map" and int(root.findtext("stream_length", "0")) > 0
        assert root.findtext("complete") == "false" and not body.startswith("<?xml")
    assert (await emu.json("channel.stream.stop"))["stat"] == "ok"
    assert emu.state.tuners_in_use == 0


# -- hooks and faults -------------------------------------------------------------------------------------
async def test_restart_wipes_sessions_and_transcodes(emu: Emu) -> None:
    await emu.json("channel.transcode.initiate", channel_id=7181, profile="720p")
    recordings = len(emu.state.store.recordings)
    emu.state.restart()
    assert emu.state.transcodes_active == 0 and emu.state.tuners_in_use == 0
    assert (await emu.json("channel.list"))["code"] == 8
    await emu.login()
    status, _, _ = await emu.raw("channel.transcode.m3u8", sid=emu.sid)
    assert status == 404
    assert len(emu.state.store.recordings) == recordings and emu.state.counters.restarts == 1


async def test_control_api_over_http(emu: Emu) -> None:
    client = emu.client
    async with client.get("/_emulator/state") as resp:
        state = await resp.json()
    assert state["counters"]["logins_ok"] == 1 and emu.sid in state["issued_sids"]
    assert state["counters"]["api_calls"]["session.login"] == 1
    async with client.post(
        "/_emulator/faults", json={"http_500": {"kind": "api", "count": 1}, "garbage_playlists": 2}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["garbage_playlists"] == 2
    status, _, _ = await emu.raw("channel.list", sid=emu.sid)
    assert status == 500
    status, _, _ = await emu.raw("channel.list", sid=emu.sid)
    assert status == 200
    async with client.delete("/_emulator/faults") as resp:
        assert (await resp.json())["garbage_playlists"] == 0
    async with client.post("/_emulator/faults", json={"http_500": {"kind": "bogus"}}) as resp:
        assert resp.status == 400
    async with client.post("/_emulator/faults", data=b"[1]") as resp:
        assert resp.status == 400
    async with client.post("/_emulator/expire-sessions") as resp:
        assert (await resp.json())["expired"] == 1
    assert (await emu.json("channel.list"))["code"] == 8
    await emu.login()
    async with client.post("/_emulator/restart") as resp:
        assert resp.status == 200
    assert (await emu.json("channel.list"))["code"] == 8
    async with client.get("/_emulator/state") as resp:
        assert (await resp.json())["counters"]["restarts"] == 1


async def test_playlist_faults_garbage_500_and_dead_transcoder(emu: Emu) -> None:
    await emu.json("channel.transcode.initiate", channel_id=7181, profile="720p")
    await _until_ready(emu)
    emu.state.faults.garbage_next_playlists(1)
    emu.state.faults.fail_500("playlist", 1)
    assert (await emu.raw("channel.transcode.m3u8", sid=emu.sid))[0] == 500
    status, _, body = await emu.raw("channel.transcode.m3u8", sid=emu.sid)
    assert status == 200 and "#EXTM3U" not in body
    assert (await _m3u8(emu)).startswith("#EXTM3U")
    emu.state.faults.kill_next_transcodes(1)
    await emu.json("channel.transcode.initiate", channel_id=7181, profile="720p")
    assert (await emu.xml("channel.transcode.status")).get("stat") == "fail"
    assert emu.state.tuners_in_use == 0
    assert (await emu.raw("channel.transcode.m3u8", sid=emu.sid))[0] == 404
    emu.state.faults.fail_500("any", 1)
    assert (await emu.raw("setting.list", sid=emu.sid))[0] == 500
    assert emu.state.faults.injected == 4


async def test_fault_slow_api(emu: Emu) -> None:
    async with emu.client.post("/_emulator/faults", json={"slow_api": {"seconds": 0.3, "count": 1}}) as resp:
        assert (await resp.json())["slow_api"] == {"count": 1, "seconds": 0.3, "method": None}
    started = time.monotonic()
    assert (await emu.json("channel.groups"))["groups"]
    assert time.monotonic() - started >= 0.3
    emu.state.faults.slow_api(0.3, method="channel.groups")
    started = time.monotonic()
    assert (await emu.json("channel.list"))["channels"]  # another method does not use it up
    assert time.monotonic() - started < 0.3
    assert (await emu.json("channel.groups"))["groups"]
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await emu.json("channel.groups"))["groups"]
    assert time.monotonic() - started < 0.3


async def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial_segments"):
        EmulatorConfig(initial_segments=9, playlist_window=6)
    with pytest.raises(ValueError, match="unknown emulator settings"):
        EmulatorConfig.from_mapping({"tunerz": 1})
    assert EmulatorConfig.from_mapping({"profiles": ["720p"]}).profiles == ("720p",)
