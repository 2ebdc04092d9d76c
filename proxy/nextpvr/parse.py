"""NextPVR envelopes -> models: one parser per API method.

Leniency rules: unknown fields are ignored; optional metadata that does not parse
(a season that is not a number, an air date that is not a date) becomes "absent";
required fields (ids, times, sid, salt, percentage) must parse or the answer is refused
with :class:`~proxy.errors.NextPVRUnparseable` naming the method and the field at fault.
Each parser reads both the XML and the JSON shape of its answer; decoding the body and
the field accessors are in :mod:`proxy.nextpvr.envelope`.
"""

from __future__ import annotations

import re

from proxy.nextpvr.envelope import (
    Envelope,
    Fields,
    int_or_none,
    json_items,
    record,
    unparseable,
    xml_all_text,
    xml_items,
    xml_root,
)
from proxy.nextpvr.models import (
    Channel,
    ChannelGroup,
    Device,
    DeviceActivity,
    Listing,
    Recording,
    RecordingStatus,
    Settings,
    SystemStatus,
    TranscodeStatus,
)

__all__ = [
    "parse_channel_groups",
    "parse_channels",
    "parse_initiate",
    "parse_listings",
    "parse_login",
    "parse_recordings",
    "parse_settings",
    "parse_system_status",
    "parse_transcode_status",
]


# -- sessions ----------------------------------------------------------------------


def parse_initiate(env: Envelope) -> tuple[str, str]:
    """``session.initiate`` -> ``(sid, salt)``."""
    f = record(env, "session")
    return f.req_str("sid"), f.req_str("salt")


def parse_login(env: Envelope) -> str | None:
    """``session.login`` -> the sid NextPVR confirms, if it names one."""
    return record(env, "login").opt_str("sid")


# -- channels ----------------------------------------------------------------------

_RADIO_TYPE = 10


def parse_channels(env: Envelope) -> tuple[Channel, ...]:
    out: list[Channel] = []
    if env.format == "xml":
        for i, el in enumerate(xml_items(env, "channels", "channel")):
            f = Fields.of_xml(env.method, f"channel #{i}", el)
            groups = xml_all_text(el, "groups", "group", single="group")
            out.append(_channel(f, xml=True, groups=groups))
    else:
        for i, obj in enumerate(json_items(env, "channels")):
            f = Fields.of_json(env.method, f"channel #{i}", obj)
            out.append(_channel(f, xml=False, groups=f.str_list("groups", "channelGroups")))
    return tuple(out)


def _channel(f: Fields, *, xml: bool, groups: tuple[str, ...]) -> Channel:
    if xml:
        number = f.opt_int("number") or 0
        minor = f.opt_int("minor") or 0
        formatted = f.text("formatted-number")
        ctype = f.opt_int("type")  # hex text: 0x1 TV, 0xa radio
        name = f.text("name")
        chid = f.req_int("id")
        icon = f.opt_bool("icon")
    else:
        number = f.opt_int("channelNumber") or 0
        minor = f.opt_int("channelMinor") or 0
        formatted = f.text("channelNumberFormated", "channelNumberFormatted")
        ctype = f.opt_int("channelType")
        name = f.text("channelName")
        chid = f.req_int("channelId")
        icon = f.opt_bool("channelIcon")
    if not formatted:
        formatted = f"{number}.{minor}" if minor else str(number)
    return Channel(
        id=chid,
        name=name,
        number=number,
        minor=minor,
        formatted_number=formatted,
        kind="radio" if ctype == _RADIO_TYPE else "tv",
        has_icon=bool(icon),
        groups=groups,
    )


def parse_channel_groups(env: Envelope) -> tuple[ChannelGroup, ...]:
    names: list[str] = []
    if env.format == "xml":
        for el in xml_items(env, "groups", "group"):
            name_el = el.find("name")
            text = (name_el.text if name_el is not None else el.text) or ""
            if text.strip():
                names.append(text.strip())
    else:
        for i, item in enumerate(json_items(env, "groups")):
            if isinstance(item, str):
                name = item.strip()
            else:
                name = Fields.of_json(env.method, f"group #{i}", item).text("name").strip()
            if name:
                names.append(name)
    return tuple(ChannelGroup(name=n) for n in dict.fromkeys(names))


# -- EPG ---------------------------------------------------------------------------


def parse_listings(env: Envelope, channel_id: int) -> tuple[Listing, ...]:
    """``channel.listings``: XML times are epoch milliseconds, JSON times epoch seconds."""
    out: list[Listing] = []
    if env.format == "xml":
        for i, el in enumerate(xml_items(env, "listings", "l")):
            f = Fields.of_xml(env.method, f"listing #{i}", el)
            genres = xml_all_text(el, "genres", "genre", single="genre")
            out.append(_listing(f, channel_id, scale=1000.0, genres=genres))
    else:
        for i, obj in enumerate(json_items(env, "listings")):
            f = Fields.of_json(env.method, f"listing #{i}", obj)
            out.append(_listing(f, channel_id, scale=1.0, genres=f.str_list("genres", "genre")))
    return tuple(out)


def _listing(f: Fields, channel_id: int, *, scale: float, genres: tuple[str, ...]) -> Listing:
    return Listing(
        id=f.req_int("id"),
        channel_id=f.opt_int("channelId", "channel_id") or channel_id,
        title=f.text("name", "title"),
        subtitle=f.text("subtitle"),
        description=f.text("description", "desc"),
        start=f.req_float("start") / scale,
        end=f.req_float("end") / scale,
        genres=genres,
        season=f.opt_int("season"),
        episode=f.opt_int("episode"),
        year=f.opt_int("year"),
        original_air_date=f.opt_date("original"),
        firstrun=bool(f.opt_bool("firstrun")),
        significance=f.text("significance"),
        rating=f.text("rating"),
    )


# -- recordings --------------------------------------------------------------------


def parse_recordings(env: Envelope) -> tuple[Recording, ...]:
    out: list[Recording] = []
    if env.format == "xml":
        for i, el in enumerate(xml_items(env, "recordings", "recording")):
            f = Fields.of_xml(env.method, f"recording #{i}", el)
            genres = xml_all_text(el, "genres", "genre", single="genre")
            out.append(_xml_recording(f, genres))
    else:
        for i, obj in enumerate(json_items(env, "recordings")):
            f = Fields.of_json(env.method, f"recording #{i}", obj)
            out.append(_json_recording(f))
    return tuple(out)


def _hhmm_seconds(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+):(\d{1,2})\s*", text)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 if m else None


def _xml_recording(f: Fields, genres: tuple[str, ...]) -> Recording:
    duration = f.opt_int("duration_seconds")
    if duration is None:
        duration = _hhmm_seconds(f.text("duration")) or 0
    return Recording(
        id=f.req_int("id"),
        name=f.text("name"),
        subtitle=f.text("subtitle"),
        description=f.text("desc", "description"),
        channel=f.text("channel"),
        channel_id=f.opt_int("channel_id") or 0,
        start=f.req_float("start_time_ticks"),
        duration_seconds=duration,
        status=RecordingStatus.from_text(f.text("status")),
        file=f.opt_str("file"),
        size=f.opt_int("size"),
        pre_padding=f.opt_int("pre_padding") or 0,
        post_padding=f.opt_int("post_padding") or 0,
        epg_event_id=f.opt_int("epg_event_oid") or None,
        recurring=bool(f.opt_bool("recurring")) or bool(f.opt_int("recurring_parent")),
        recurring_parent=f.opt_int("recurring_parent") or None,
        playback_position=f.opt_int("playback_position") or 0,
        played=bool(f.opt_bool("played")),
        reason=f.text("reason"),
        genres=genres,
        season=f.opt_int("season"),
        episode=f.opt_int("episode"),
        year=f.opt_int("year"),
        original_air_date=f.opt_date("original"),
        significance=f.text("significance"),
    )


def _json_recording(f: Fields) -> Recording:
    return Recording(
        id=f.req_int("id"),
        name=f.text("name"),
        subtitle=f.text("subtitle"),
        description=f.text("desc", "description"),
        channel=f.text("channel"),
        channel_id=f.opt_int("channelId") or 0,
        start=f.req_float("startTime"),
        duration_seconds=f.opt_int("duration") or 0,
        status=RecordingStatus.from_text(f.text("status")),
        file=f.opt_str("file"),
        size=f.opt_int("size"),
        pre_padding=f.opt_int("prePadding") or 0,
        post_padding=f.opt_int("postPadding") or 0,
        epg_event_id=f.opt_int("epgEventId") or None,
        recurring=bool(f.opt_bool("recurring")) or bool(f.opt_int("recurringParent")),
        recurring_parent=f.opt_int("recurringParent") or None,
        playback_position=f.opt_int("playbackPosition") or 0,
        played=bool(f.opt_bool("played")),
        reason=f.text("reason"),
        genres=f.str_list("genres"),
        season=f.opt_int("season"),
        episode=f.opt_int("episode"),
        year=f.opt_int("year"),
        original_air_date=f.opt_date("original"),
        significance=f.text("significance"),
    )


# -- settings, system, transcodes --------------------------------------------------


def parse_settings(env: Envelope) -> Settings:
    f = record(env, "settings")
    x = env.format == "xml"
    version = f.opt_int("NextPVRVersion" if x else "nextPVRVersion") or 0
    readable = f.text("ReadableVersion" if x else "readableVersion")
    if not readable and version:
        readable = f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    dirs = f.text("RecordingDirectories" if x else "recordingDirectories")
    return Settings(
        version=version,
        readable_version=readable,
        pre_padding=f.opt_int("PrePadding" if x else "prePadding") or 0,
        post_padding=f.opt_int("PostPadding" if x else "postPadding") or 0,
        time_epoch=f.opt_float("TimeEpoch" if x else "timeEpoch"),
        recording_directories=tuple(
            d.strip().removeprefix("[").removesuffix("]") for d in dirs.split(",") if d.strip()
        ),
        live_timeshift=f.opt_bool("LiveTimeshift" if x else "liveTimeshift"),
        slip_seconds=f.opt_int("SlipSeconds" if x else "slipSeconds"),
        channels_use_segmenter=f.opt_bool("ChannelsUseSegmenter" if x else "channelsUseSegmenter"),
        recordings_use_segmenter=f.opt_bool("RecordingsUseSegmenter" if x else "recordingsUseSegmenter"),
    )


def parse_system_status(env: Envelope) -> SystemStatus:
    """``system.status``: ``<Device oid identifier>`` elements whose children name activities.

    The wrapper element around the devices is not documented, so devices are found at
    any depth. The JSON form is not documented at all; the client asks for XML, and the
    JSON reading here (``devices``/``Devices`` list of ``{oid, identifier, activities}``)
    is a guess kept only so an unexpected JSON answer is read rather than refused.
    """
    devices: list[Device] = []
    if env.format == "xml":
        for i, el in enumerate(xml_root(env).iter("Device")):
            oid = int_or_none(el.get("oid"))
            if oid is None:
                raise unparseable(env.method, f"device #{i}: 'oid' is missing or not an integer")
            acts = tuple(DeviceActivity(kind=c.tag, detail=(c.text or "").strip()) for c in el)
            devices.append(Device(oid=oid, identifier=el.get("identifier", ""), activities=acts))
    else:
        key = "Devices" if isinstance(env.data, dict) and "Devices" in env.data else "devices"
        for i, obj in enumerate(json_items(env, key)):
            f = Fields.of_json(env.method, f"device #{i}", obj)
            acts_raw = f.raw("activities")
            acts_list: list[DeviceActivity] = []
            if isinstance(acts_raw, list):
                for a in acts_raw:
                    if isinstance(a, dict):
                        af = Fields(env.method, f"device #{i} activity", a)
                        acts_list.append(DeviceActivity(kind=af.text("kind", "type"),
                                                        detail=af.text("detail", "file")))
            devices.append(Device(oid=f.req_int("oid"), identifier=f.text("identifier"),
                                  activities=tuple(acts_list)))
    return SystemStatus(devices=tuple(devices))


def parse_transcode_status(env: Envelope) -> TranscodeStatus:
    f = record(env, "transcode status")
    percentage = f.req_int("percentage")
    return TranscodeStatus(percentage=max(0, min(100, percentage)), final=bool(f.opt_bool("final")))
