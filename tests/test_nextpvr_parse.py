from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.errors import NextPVRUnparseable
from proxy.nextpvr.auth import login_hash
from proxy.nextpvr.envelope import Envelope, is_session_error, parse_envelope
from proxy.nextpvr.models import RecordingStatus
from proxy.nextpvr.parse import (
    parse_channel_groups,
    parse_channels,
    parse_initiate,
    parse_listings,
    parse_login,
    parse_recordings,
    parse_settings,
    parse_system_status,
    parse_transcode_status,
)

RES = Path(__file__).parent / "resources" / "nextpvr"
FORMATS = ["xml", "json"]


def load(name: str, method: str = "test.method") -> Envelope:
    return parse_envelope((RES / name).read_bytes(), method)


# -- auth ---------------------------------------------------------------------------


def test_login_hash_matches_the_documented_vector() -> None:
    assert login_hash("0000", "95f4f028-e9a3-470a-a86c-142037098dad") == "ce0c9a50173691581c67a42d4a58d7df"


def test_login_hash_depends_on_pin_and_salt() -> None:
    base = login_hash("0000", "s")
    assert login_hash("0001", "s") != base
    assert login_hash("0000", "t") != base


# -- envelopes ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_session_initiate_gives_sid_and_salt(fmt: str) -> None:
    env = load(f"session_initiate.{fmt}", "session.initiate")
    assert env.ok
    assert env.format == fmt
    assert parse_initiate(env) == ("1364d857ab564bd893c7ea5008de0644", "95f4f028-e9a3-470a-a86c-142037098dad")


def test_login_answer_with_and_without_sid() -> None:
    assert parse_login(parse_envelope(b'<rsp stat="ok"><sid>abc</sid></rsp>', "session.login")) == "abc"
    assert parse_login(parse_envelope(b'{"stat":"ok"}', "session.login")) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_code8_is_a_session_error_in_both_formats(fmt: str) -> None:
    env = load(f"error_code8.{fmt}")
    assert not env.ok
    assert env.code == 8
    assert is_session_error(env)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'<rsp stat="weird"><err code="8" msg="x"/></rsp>', id="xml-any-stat"),
        pytest.param(b'{"stat":"Failed","code":"8","msg":"x"}', id="json-code-as-text"),
        pytest.param(b'<rsp stat="fail"><err code="99" msg="Not Logged In"/></rsp>', id="xml-msg"),
        pytest.param(b'{"stat":"fail","code":3,"msg":"invalid session id"}', id="json-msg"),
    ],
)
def test_session_error_detection_variants(body: bytes) -> None:
    assert is_session_error(parse_envelope(body, "m"))


def test_any_stat_other_than_ok_is_failure() -> None:
    env = load("error_invalid_args.json")
    assert not env.ok
    assert env.stat == "Failed"
    assert env.code == 2
    assert env.msg == "Invalid Args."
    assert not is_session_error(env)
    assert not parse_envelope(b'<rsp stat="failed"/>', "m").ok
    assert parse_envelope(b'<rsp stat="OK"/>', "m").ok


def test_json_success_may_omit_stat() -> None:
    env = parse_envelope(b'{"channels":[]}', "channel.list")
    assert env.ok
    assert parse_channels(env) == ()


def test_xml_without_stat_is_ok_unless_it_has_err() -> None:
    assert parse_envelope(b"<rsp/>", "m").ok
    assert not parse_envelope(b'<rsp><err code="1" msg="no"/></rsp>', "m").ok


def test_bom_and_leading_whitespace_are_accepted() -> None:
    body = b"\xef\xbb\xbf\n  " + (RES / "transcode_status.xml").read_bytes()
    assert parse_transcode_status(parse_envelope(body, "m")).percentage == 37


GARBAGE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"   \n", id="blank"),
    pytest.param(b"Internal Server Error", id="text"),
    pytest.param(b'<rsp stat="ok"><channels>', id="truncated-xml"),
    pytest.param(b"<html><body>proxy error</body></html>", id="html"),
    pytest.param(b'{"channels": [', id="truncated-json"),
    pytest.param(b'"just a string"', id="json-scalar"),
    pytest.param(b"[" * 100_000, id="deep-json"),
    pytest.param(b'{"stat": 5}', id="json-stat-not-string"),
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<rsp stat="ok"><sid>&lol2;</sid></rsp>',
        id="billion-laughs",
    ),
    pytest.param(b'<!doctype rsp SYSTEM "file:///etc/passwd"><rsp stat="ok"/>', id="external-dtd"),
    pytest.param(b'<?xml version="1.0" encoding="utf-16"?><rsp stat="ok"/>', id="utf16-declared"),
    pytest.param('<rsp stat="ok"/>'.encode("utf-16"), id="utf16-bytes"),
    pytest.param(b'<?xml version="1.0" encoding="cp500"?><rsp/>', id="ebcdic"),
    pytest.param(b'<rsp stat="ok"><sid>\xff\xfe</sid></rsp>', id="bad-utf8"),
]


@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_is_unparseable_and_never_quoted(body: bytes) -> None:
    with pytest.raises(NextPVRUnparseable) as info:
        parse_envelope(body, "channel.list")
    assert "channel.list" in info.value.message
    assert "proxy error" not in info.value.message
    assert "lol" not in info.value.message


@pytest.mark.parametrize(
    ("method", "body", "parser"),
    [
        pytest.param("session.initiate", b'<rsp stat="ok"><sid>a</sid></rsp>', parse_initiate, id="no-salt"),
        pytest.param("session.initiate", b'{"sid": 5, "salt": "x"}', parse_initiate, id="sid-not-text"),
        pytest.param("channel.list", b'{"channels": {"a": 1}}', parse_channels, id="channels-not-list"),
        pytest.param("channel.list", b'{"channels": [5]}', parse_channels, id="channel-not-object"),
        pytest.param("channel.list", b'{"channels": [{"channelId": "x"}]}', parse_channels, id="bad-id"),
        pytest.param(
            "channel.list",
            b'<rsp stat="ok"><channels><channel><name>x</name></channel></channels></rsp>',
            parse_channels,
            id="xml-no-id",
        ),
        pytest.param("recording.list", b'{"recordings": [{"id": 1}]}', parse_recordings, id="no-start"),
        pytest.param("channel.transcode.status", b'<rsp stat="ok"/>', parse_transcode_status, id="no-pct"),
        pytest.param("system.status", b'<rsp stat="ok"><Device identifier="x"/></rsp>', parse_system_status,
                     id="device-no-oid"),
        pytest.param("setting.list", b"[1, 2]", parse_settings, id="settings-list"),
        pytest.param("channel.list", b'<foo stat="ok"/>', parse_channels, id="root-not-rsp"),
    ],
)
def test_wrong_shapes_are_unparseable(method: str, body: bytes, parser: Callable[[Envelope], object]) -> None:
    with pytest.raises(NextPVRUnparseable) as info:
        parser(parse_envelope(body, method))
    assert method in info.value.message


# -- channels -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_channels(fmt: str) -> None:
    tv, radio = parse_channels(load(f"channel_list.{fmt}", "channel.list"))
    assert (tv.id, tv.name, tv.number, tv.minor, tv.formatted_number) == (7181, "WXYZ-HD", 4, 1, "4.1")
    assert tv.kind == "tv"
    assert tv.has_icon is True
    assert (radio.id, radio.kind, radio.has_icon, radio.formatted_number) == (7200, "radio", False, "901")
    if fmt == "xml":
        assert tv.groups == ("Favourites", "News")


def test_channel_formatted_number_is_derived_when_missing() -> None:
    env = parse_envelope(b'{"channels":[{"channelId":1,"channelNumber":5,"channelMinor":2}]}', "channel.list")
    (ch,) = parse_channels(env)
    assert ch.formatted_number == "5.2"


@pytest.mark.parametrize("fmt", FORMATS)
def test_channel_groups(fmt: str) -> None:
    groups = parse_channel_groups(load(f"channel_groups.{fmt}", "channel.groups"))
    assert [g.name for g in groups] == ["All Channels", "Favourites"]


# -- EPG ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_listings_units_are_normalised_to_seconds(fmt: str) -> None:
    # XML sends epoch milliseconds, JSON epoch seconds; both must come out the same
    news, film = parse_listings(load(f"channel_listings.{fmt}", "channel.listings"), channel_id=7181)
    assert news.start == 1735689600.0
    assert news.end == 1735691400.0
    assert news.start_utc == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert news.duration_seconds == 1800
    assert news.channel_id == 7181
    assert (news.id, news.title, news.subtitle) == (1323459, "News at Ten", "S12E34 - Election Night")
    assert news.description == "Coverage of the results."
    assert news.genres == ("News", "Politics")
    assert (news.season, news.episode, news.firstrun) == (12, 34, True)
    assert news.significance == "Live"
    assert news.rating == "TV-PG"
    assert news.original_air_date == dt.date(2025, 1, 1)
    assert film.year == 1999
    assert film.season is None
    assert film.original_air_date is None
    assert film.firstrun is False


def test_listings_without_container_are_empty() -> None:
    assert parse_listings(parse_envelope(b'<rsp stat="ok"/>', "channel.listings"), 1) == ()


def test_listings_single_genre_element() -> None:
    body = b'<rsp stat="ok"><listings><l><id>1</id><start>0</start><end>1000</end><genre>Sport</genre></l>' \
           b"</listings></rsp>"
    (listing,) = parse_listings(parse_envelope(body, "channel.listings"), 1)
    assert listing.genres == ("Sport",)
    assert listing.end == 1.0


# -- recordings ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_recordings(fmt: str) -> None:
    recs = parse_recordings(load(f"recording_list.{fmt}", "recording.list"))
    ready, growing, pending, odd = recs
    assert ready.id == 866
    assert ready.status is RecordingStatus.READY
    assert ready.start == 1735689600.0
    assert ready.duration_seconds == 1800
    assert ready.end == 1735691400.0
    assert ready.description == "Coverage of the results."
    assert ready.file == "/recordings/News at Ten/News at Ten_20250101_22002230.ts"
    assert (ready.channel, ready.channel_id, ready.epg_event_id) == ("WXYZ-HD", 7181, 1323459)
    assert (ready.pre_padding, ready.post_padding, ready.size) == (1, 2, 1234567890)
    assert ready.recurring is False
    assert ready.growing is False
    assert growing.status is RecordingStatus.RECORDING
    assert growing.growing is True
    # XML gives "02:00" only for this one; JSON gives seconds
    assert growing.duration_seconds == 7200
    assert growing.recurring is True
    assert growing.recurring_parent == 12
    assert pending.status is RecordingStatus.PENDING
    assert pending.file is None
    assert pending.channel_id == 0
    if fmt == "xml":
        assert odd.status is RecordingStatus.UNKNOWN
    else:
        assert odd.status is RecordingStatus.DELETED


def test_recording_status_is_case_insensitive() -> None:
    assert RecordingStatus.from_text("Conflict") is RecordingStatus.CONFLICT
    assert RecordingStatus.from_text("FAILED") is RecordingStatus.FAILED
    assert RecordingStatus.from_text(None) is RecordingStatus.UNKNOWN


# -- settings, system, transcodes ---------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_settings(fmt: str) -> None:
    s = parse_settings(load(f"setting_list.{fmt}", "setting.list"))
    assert s.version == 70103
    assert s.readable_version == "7.1.3"
    assert (s.pre_padding, s.post_padding) == (1, 2)
    assert s.time_epoch == 1735689600.0
    assert s.recording_directories == ("Default", "Movies")
    assert s.live_timeshift is True
    assert s.slip_seconds == 10800
    assert s.channels_use_segmenter is False
    assert s.recordings_use_segmenter is True


def test_settings_readable_version_is_derived() -> None:
    s = parse_settings(parse_envelope(b'<rsp stat="ok"><NextPVRVersion>60106</NextPVRVersion></rsp>', "m"))
    assert s.readable_version == "6.1.6"


def test_system_status_counts_tuners_and_busy_ones() -> None:
    status = parse_system_status(load("system_status.xml", "system.status"))
    assert status.tuner_count == 3
    assert status.busy_count == 2
    first, second, idle = status.devices
    assert first.oid == 31
    assert first.identifier == "HDHomeRun 1013FADA tuner 0"
    assert [a.kind for a in second.activities] == ["Recording", "LiveTV"]
    assert first.activities[0].detail == "/config/livetvbuffer/live-KOMO-1-26.ts"
    assert not idle.busy


def test_system_status_json_guess() -> None:
    body = (b'{"devices":[{"oid":1,"identifier":"t0","activities":[{"kind":"LiveTV","detail":"f"}]},'
            b'{"oid":2}]}')
    status = parse_system_status(parse_envelope(body, "system.status"))
    assert (status.tuner_count, status.busy_count) == (2, 1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_transcode_status(fmt: str) -> None:
    st = parse_transcode_status(load(f"transcode_status.{fmt}", "channel.transcode.status"))
    assert (st.percentage, st.final, st.ready, st.failed) == (37, False, False, False)


def test_transcode_final_below_100_is_failure() -> None:
    st = parse_transcode_status(parse_envelope(b'{"percentage":12,"final":true}', "m"))
    assert st.failed
    assert not st.ready
    done = parse_transcode_status(parse_envelope(b'<rsp stat="ok"><percentage>100</percentage></rsp>', "m"))
    assert done.ready
    assert not done.failed
