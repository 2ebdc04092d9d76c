"""NextPVR answers (XML or JSON) -> :class:`Envelope` -> models.

:func:`parse_envelope` sniffs the body rather than trusting what was asked for: NextPVR
may ignore ``format=json`` on some methods. Anything malformed, or shaped unlike the
documented answers, raises :class:`NextPVRUnparseable` naming the method and the field
at fault, never quoting the body (it may carry a session id).

Leniency rules: unknown fields are ignored; optional metadata that does not parse
(a season that is not a number, an air date that is not a date) becomes "absent";
required fields (ids, times, sid, salt, percentage) must parse or the answer is refused.

XML is parsed with :mod:`xml.etree.ElementTree` after refusing any DTD (``<!DOCTYPE``,
``<!ENTITY``) so entity expansion attacks cannot start, and only ASCII-compatible
encodings are accepted so that refusal cannot be dodged by re-encoding the document.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from proxy.errors import NextPVRUnparseable
from proxy.log import redact
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
    "Envelope",
    "is_session_error",
    "parse_channel_groups",
    "parse_channels",
    "parse_envelope",
    "parse_initiate",
    "parse_listings",
    "parse_login",
    "parse_recordings",
    "parse_settings",
    "parse_system_status",
    "parse_transcode_status",
    "safe_message",
]

#: NextPVR's code for "missing, invalid or expired sid"
SESSION_ERROR_CODE = 8
_SESSION_ERROR_MSG = re.compile(r"not logged in|invalid session", re.IGNORECASE)

_BOM = b"\xef\xbb\xbf"
_XML_DECL = re.compile(rb"\A<\?xml[^>]*\?>")
_XML_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# single-byte or UTF-8 codecs in which "<!DOCTYPE" cannot hide
_XML_CODECS = {
    "utf-8": "utf-8", "utf8": "utf-8", "us-ascii": "ascii", "ascii": "ascii",
    "iso-8859-1": "latin-1", "latin-1": "latin-1", "latin1": "latin-1",
    "windows-1252": "cp1252", "cp1252": "cp1252",
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One parsed API answer: its status plus the XML root or the JSON value."""

    method: str
    format: Literal["xml", "json"]
    ok: bool
    #: the stat text as sent ("" when a JSON body left it out)
    stat: str = ""
    code: int | None = None
    #: NextPVR's error message; may be empty
    msg: str = ""
    #: the ``<rsp>`` element (XML)
    root: ET.Element | None = None
    #: the decoded JSON value (JSON)
    data: object = None


def _unparseable(method: str, problem: str) -> NextPVRUnparseable:
    return NextPVRUnparseable(f"NextPVR sent an unreadable answer to {method} ({problem})")


def parse_envelope(body: bytes, method: str) -> Envelope:
    """Decode ``body`` as XML or JSON, whichever it is, and read the stat/code/msg."""
    if body.startswith(_BOM):
        body = body[len(_BOM):]
    head = body.lstrip()[:1]
    if head == b"<":
        return _xml_envelope(body, method)
    if head in (b"{", b"["):
        return _json_envelope(body, method)
    if not head:
        raise _unparseable(method, "empty body")
    raise _unparseable(method, "neither XML nor JSON")


def _xml_envelope(body: bytes, method: str) -> Envelope:
    root = _parse_xml(body, method)
    if root.tag != "rsp":
        raise _unparseable(method, f"root element <{_short(root.tag)}> instead of <rsp>")
    stat = root.get("stat")
    err = root.find("err")
    code: int | None = None
    msg = ""
    if err is not None:
        code = _int_or_none(err.get("code"))
        msg = err.get("msg") or (err.text or "").strip()
    # a missing stat is read as success unless an <err> says otherwise
    ok = stat.strip().lower() == "ok" if stat is not None else err is None
    return Envelope(method, "xml", ok, stat or "", code, msg, root=root)


def _parse_xml(body: bytes, method: str) -> ET.Element:
    if b"\x00" in body:
        raise _unparseable(method, "XML in an unsupported encoding")
    body = body.lstrip()
    codec = "utf-8"
    decl = _XML_DECL.match(body)
    if decl:
        enc = _XML_ENCODING.search(decl.group(0))
        if enc:
            name = enc.group(1).decode("ascii").lower()
            if name not in _XML_CODECS:
                raise _unparseable(method, "XML in an unsupported encoding")
            codec = _XML_CODECS[name]
        body = body[decl.end():]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:
        raise _unparseable(method, f"XML that is not valid {codec}") from None
    if _DTD.search(text):
        raise _unparseable(method, "XML with a DTD, refused")
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        raise _unparseable(method, "malformed XML") from None


def _json_envelope(body: bytes, method: str) -> Envelope:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _unparseable(method, "malformed JSON") from None
    if isinstance(data, list):
        return Envelope(method, "json", True, data=data)
    if not isinstance(data, dict):
        raise _unparseable(method, "JSON that is neither an object nor a list")
    stat = data.get("stat")
    if stat is not None and not isinstance(stat, str):
        raise _unparseable(method, "'stat' is not a string")
    code = data.get("code")
    code_int = _int_or_none(code) if isinstance(code, int | str) and not isinstance(code, bool) else None
    msg = data.get("msg")
    msg_text = msg if isinstance(msg, str) else ""
    ok = stat is None or stat.strip().lower() == "ok"
    return Envelope(method, "json", ok, stat or "", code_int, msg_text, data=data)


def is_session_error(env: Envelope) -> bool:
    """True for NextPVR's "log in again" answer: code 8, or a message saying so."""
    if env.ok:
        return False
    return env.code == SESSION_ERROR_CODE or bool(_SESSION_ERROR_MSG.search(env.msg))


def safe_message(env: Envelope, *, limit: int = 80) -> str:
    """``"code 2: Invalid Args."``: NextPVR's failure text, fit for an error message.

    The text is foreign, so it is cut short, stripped of control characters and scrubbed
    of anything that looks like a session id before it goes anywhere.
    """
    msg = "".join(ch for ch in env.msg if ch.isprintable()).strip()
    msg = redact(msg[:limit] + ("..." if len(msg) > limit else ""))
    code = f"code {env.code}" if env.code is not None else f"stat {_short(env.stat)!r}"
    return f"{code}: {msg}" if msg else code


# -- field accessors ---------------------------------------------------------------


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            return None
    return None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _bool_or_none(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no", ""):
            return False
    return None


def _date_or_none(value: object) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


class _Fields:
    """Uniform typed access to one record, whether an XML element or a JSON object.

    ``what`` names the record in error messages (``"channel #3"``), never its values.
    """

    def __init__(self, method: str, what: str, get: Mapping[str, object]) -> None:
        self.method = method
        self.what = what
        self._get = get

    @classmethod
    def of_xml(cls, method: str, what: str, el: ET.Element) -> _Fields:
        values: dict[str, object] = {}
        for child in el:
            # first occurrence wins; repeated children (genres) are read with xml_all()
            values.setdefault(child.tag, (child.text or "").strip())
        return cls(method, what, values)

    @classmethod
    def of_json(cls, method: str, what: str, obj: object) -> _Fields:
        if not isinstance(obj, dict):
            raise _unparseable(method, f"{what} is not an object")
        return cls(method, what, obj)

    def _fail(self, key: str, problem: str) -> NextPVRUnparseable:
        return _unparseable(self.method, f"{self.what}: '{key}' {problem}")

    def raw(self, *keys: str) -> object:
        for key in keys:
            value = self._get.get(key)
            if value is not None:
                return value
        return None

    def req_int(self, *keys: str) -> int:
        value = _int_or_none(self.raw(*keys))
        if value is None:
            raise self._fail(keys[0], "is missing or not an integer")
        return value

    def req_float(self, *keys: str) -> float:
        value = _float_or_none(self.raw(*keys))
        if value is None:
            raise self._fail(keys[0], "is missing or not a number")
        return value

    def req_str(self, *keys: str) -> str:
        value = self.raw(*keys)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(keys[0], "is missing or empty")
        return value.strip()

    def opt_int(self, *keys: str) -> int | None:
        return _int_or_none(self.raw(*keys))

    def opt_float(self, *keys: str) -> float | None:
        return _float_or_none(self.raw(*keys))

    def text(self, *keys: str, default: str = "") -> str:
        value = self.raw(*keys)
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return default

    def opt_str(self, *keys: str) -> str | None:
        value = self.text(*keys)
        return value or None

    def opt_bool(self, *keys: str) -> bool | None:
        return _bool_or_none(self.raw(*keys))

    def opt_date(self, *keys: str) -> dt.date | None:
        return _date_or_none(self.raw(*keys))

    def str_list(self, *keys: str) -> tuple[str, ...]:
        value = self.raw(*keys)
        if isinstance(value, list):
            return tuple(v.strip() for v in value if isinstance(v, str) and v.strip())
        if isinstance(value, str) and value.strip():
            return (value.strip(),)
        return ()


def _xml_root(env: Envelope) -> ET.Element:
    if env.root is None:
        raise _unparseable(env.method, "expected XML")
    return env.root


def _xml_items(env: Envelope, container: str, item: str) -> Iterator[ET.Element]:
    """``<rsp><container><item/>...`` items; a missing container means an empty list."""
    root = _xml_root(env)
    box = root.find(container)
    if box is None:
        return iter(())
    return box.iterfind(item)


def _xml_all_text(el: ET.Element, container: str, item: str, single: str | None = None) -> tuple[str, ...]:
    """Texts of ``<container><item>`` (or of direct ``<single>`` children), deduplicated."""
    out: list[str] = []
    for child in el.iterfind(f"{container}/{item}"):
        text = (child.text or "").strip()
        if text and text not in out:
            out.append(text)
    if not out and single:
        for child in el.iterfind(single):
            text = (child.text or "").strip()
            if text and text not in out:
                out.append(text)
    return tuple(out)


def _json_items(env: Envelope, key: str) -> list[object]:
    data = env.data
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise _unparseable(env.method, "expected a JSON object")
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _unparseable(env.method, f"'{key}' is not a list")
    return items


# -- sessions ----------------------------------------------------------------------


def parse_initiate(env: Envelope) -> tuple[str, str]:
    """``session.initiate`` -> ``(sid, salt)``."""
    f = _record(env, "session")
    return f.req_str("sid"), f.req_str("salt")


def parse_login(env: Envelope) -> str | None:
    """``session.login`` -> the sid NextPVR confirms, if it names one."""
    return _record(env, "login").opt_str("sid")


def _record(env: Envelope, what: str) -> _Fields:
    """The single record that makes up the whole answer (children of ``<rsp>``, or the object)."""
    if env.format == "xml":
        return _Fields.of_xml(env.method, what, _xml_root(env))
    return _Fields.of_json(env.method, what, env.data)


# -- channels ----------------------------------------------------------------------

_RADIO_TYPE = 10


def parse_channels(env: Envelope) -> tuple[Channel, ...]:
    out: list[Channel] = []
    if env.format == "xml":
        for i, el in enumerate(_xml_items(env, "channels", "channel")):
            f = _Fields.of_xml(env.method, f"channel #{i}", el)
            groups = _xml_all_text(el, "groups", "group", single="group")
            out.append(_channel(f, xml=True, groups=groups))
    else:
        for i, obj in enumerate(_json_items(env, "channels")):
            f = _Fields.of_json(env.method, f"channel #{i}", obj)
            out.append(_channel(f, xml=False, groups=f.str_list("groups", "channelGroups")))
    return tuple(out)


def _channel(f: _Fields, *, xml: bool, groups: tuple[str, ...]) -> Channel:
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
        for el in _xml_items(env, "groups", "group"):
            name_el = el.find("name")
            text = (name_el.text if name_el is not None else el.text) or ""
            if text.strip():
                names.append(text.strip())
    else:
        for i, item in enumerate(_json_items(env, "groups")):
            if isinstance(item, str):
                name = item.strip()
            else:
                name = _Fields.of_json(env.method, f"group #{i}", item).text("name").strip()
            if name:
                names.append(name)
    return tuple(ChannelGroup(name=n) for n in dict.fromkeys(names))


# -- EPG ---------------------------------------------------------------------------


def parse_listings(env: Envelope, channel_id: int) -> tuple[Listing, ...]:
    """``channel.listings``: XML times are epoch milliseconds, JSON times epoch seconds."""
    out: list[Listing] = []
    if env.format == "xml":
        for i, el in enumerate(_xml_items(env, "listings", "l")):
            f = _Fields.of_xml(env.method, f"listing #{i}", el)
            genres = _xml_all_text(el, "genres", "genre", single="genre")
            out.append(_listing(f, channel_id, scale=1000.0, genres=genres))
    else:
        for i, obj in enumerate(_json_items(env, "listings")):
            f = _Fields.of_json(env.method, f"listing #{i}", obj)
            out.append(_listing(f, channel_id, scale=1.0, genres=f.str_list("genres", "genre")))
    return tuple(out)


def _listing(f: _Fields, channel_id: int, *, scale: float, genres: tuple[str, ...]) -> Listing:
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
        for i, el in enumerate(_xml_items(env, "recordings", "recording")):
            f = _Fields.of_xml(env.method, f"recording #{i}", el)
            genres = _xml_all_text(el, "genres", "genre", single="genre")
            out.append(_xml_recording(f, genres))
    else:
        for i, obj in enumerate(_json_items(env, "recordings")):
            f = _Fields.of_json(env.method, f"recording #{i}", obj)
            out.append(_json_recording(f))
    return tuple(out)


def _hhmm_seconds(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+):(\d{1,2})\s*", text)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 if m else None


def _xml_recording(f: _Fields, genres: tuple[str, ...]) -> Recording:
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


def _json_recording(f: _Fields) -> Recording:
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
    f = _record(env, "settings")
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
        for i, el in enumerate(_xml_root(env).iter("Device")):
            oid = _int_or_none(el.get("oid"))
            if oid is None:
                raise _unparseable(env.method, f"device #{i}: 'oid' is missing or not an integer")
            acts = tuple(DeviceActivity(kind=c.tag, detail=(c.text or "").strip()) for c in el)
            devices.append(Device(oid=oid, identifier=el.get("identifier", ""), activities=acts))
    else:
        key = "Devices" if isinstance(env.data, dict) and "Devices" in env.data else "devices"
        for i, obj in enumerate(_json_items(env, key)):
            f = _Fields.of_json(env.method, f"device #{i}", obj)
            acts_raw = f.raw("activities")
            acts_list: list[DeviceActivity] = []
            if isinstance(acts_raw, list):
                for a in acts_raw:
                    if isinstance(a, dict):
                        af = _Fields(env.method, f"device #{i} activity", a)
                        acts_list.append(DeviceActivity(kind=af.text("kind", "type"),
                                                        detail=af.text("detail", "file")))
            devices.append(Device(oid=f.req_int("oid"), identifier=f.text("identifier"),
                                  activities=tuple(acts_list)))
    return SystemStatus(devices=tuple(devices))


def parse_transcode_status(env: Envelope) -> TranscodeStatus:
    f = _record(env, "transcode status")
    percentage = f.req_int("percentage")
    return TranscodeStatus(percentage=max(0, min(100, percentage)), final=bool(f.opt_bool("final")))
