"""``/service?method=...``: dispatch, session checks, and the session, setting and system methods.

Failures are HTTP 200 with a non-ok stat, as on the real server. Error codes used here:
1 login failed, 2 "Invalid Args." (stat ``Failed``), 3 unknown method (configurable),
8 not logged in, 9 no tuner for a transcode, 10 transcoder failed, 11 profile not defined.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Mapping

from aiohttp import web
from multidict import MultiDict

from proxy.emulator import api_channels, api_recordings, api_transcode
from proxy.emulator.call import Call, Handler
from proxy.emulator.connections import abortable, nap
from proxy.emulator.faults import FaultKind
from proxy.emulator.render import ApiError, Reply, el, invalid_args, leaf, render, render_error, wants_json
from proxy.emulator.state import STATE_KEY

__all__ = ["METHODS", "PUBLIC_METHODS", "service"]

VERSION = 70103
READABLE_VERSION = "7.1.3"
DEFAULT_PIN = "0000"
SETTINGS: dict[str, str] = {
    "/Settings/Recording/RecordingDirectory": "/recordings",
    "/Settings/Recording/ExtraRecordingDirectories": "Movies~/recordings/movies",
    "/Settings/Recording/PrePadding": "1",
    "/Settings/Recording/PostPadding": "2",
    "/Settings/General/ArtworkFromSchedulesDirect": "false",
    "/Settings/General/ServerMAC": "001122334455",
}
DISK_TOTAL = 2_000_000_000_000
DISK_FREE = 1_250_000_000_000


# -- session ---------------------------------------------------------------------------------------
async def session_initiate(call: Call) -> Reply:
    session = call.state.new_session(call.arg("device") or "unknown")
    return Reply(
        xml=(leaf("sid", session.sid), leaf("salt", session.salt)),
        json={"sid": session.sid, "salt": session.salt},
        json_stat=True,
    )


def expected_login_hash(pin: str, salt: str) -> str:
    inner = hashlib.md5(pin.encode()).hexdigest().lower()
    return hashlib.md5(f":{inner}:{salt}".encode()).hexdigest()


async def session_login(call: Call) -> Reply:
    state, cfg = call.state, call.state.config
    sid, digest = call.required("sid"), call.arg("md5") or ""
    refusal = _remote_refusal(call)
    session = state.session(sid, authenticated=False)
    if (
        refusal is None
        and session is not None
        and digest.lower() == expected_login_hash(cfg.pin, session.salt)
    ):
        session.authenticated = True
        state.counters.logins_ok += 1
        state.changed()
        return Reply(
            xml=(leaf("sid", session.sid), leaf("allow_watch", True)),
            json={"sid": session.sid},
            json_stat=True,
        )
    state.counters.logins_failed += 1
    state.changed()
    raise ApiError(cfg.login_failed_code, refusal or cfg.login_failed_message)


def _remote_refusal(call: Call) -> str | None:
    """NextPVR's extra refusals for clients outside the LAN."""
    cfg = call.state.config
    if _is_local(call.request.remote):
        return None
    if not cfg.remote_access:
        return "Remote access is not enabled"
    if cfg.refuse_remote_default_pin and cfg.pin == DEFAULT_PIN:
        return "Remote login attempt with default credentials"
    return None


def _is_local(remote: str | None) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return True  # unix sockets and test transports
    return address.is_private or address.is_loopback or address.is_link_local


async def session_valid(call: Call) -> Reply:
    return Reply(json_stat=True, json={})


async def session_logout(call: Call) -> Reply:
    sid = call.sid
    call.state.end_transcode(sid, "stopped")
    call.state.end_timeshift(sid)
    call.state.drop_session(sid)
    call.state.counters.logouts += 1
    return Reply(json_stat=True, json={})


# -- settings --------------------------------------------------------------------------------------
async def setting_list(call: Call) -> Reply:
    now = int(time.time())
    if call.json:
        return Reply(
            json={
                "version": READABLE_VERSION,
                "nextPVRVersion": VERSION,
                "readableVersion": READABLE_VERSION,
                "liveTimeshift": True,
                "liveTimeshiftBufferInfo": True,
                "channelsUseSegmenter": False,
                "recordingsUseSegmenter": True,
                "whatsNewDays": 7,
                "skipForwardSeconds": 30,
                "skipBackSeconds": 10,
                "skipFFSeconds": 60,
                "skipRWSeconds": 60,
                "recordingView": "Grouped",
                "prePadding": 1,
                "postPadding": 2,
                "confirmOnDelete": True,
                "showNewInGuide": True,
                "slipSeconds": 10800,
                "recordingDirectories": "[Default],[Movies]",
                "channelDetailsLevel": 1,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "timeEpoch": now,
            },
            json_stat=call.state.config.json_list_stat,
        )
    return Reply(
        xml=(
            leaf("Version", READABLE_VERSION),
            leaf("NextPVRVersion", VERSION),
            leaf("ReadableVersion", READABLE_VERSION),
            leaf("LiveTimeshift", True),
            leaf("ChannelsUseSegmenter", False),
            leaf("RecordingsUseSegmenter", True),
            leaf("ChannelDetailsLevel", 1),
            leaf("PrePadding", 1),
            leaf("PostPadding", 2),
            leaf("ShowNewInGuide", True),
            leaf("SlipSeconds", 10800),
            leaf("RecordingDirectories", "[Default],[Movies]"),
            leaf("TimeEpoch", now),
            leaf("ServerMAC", SETTINGS["/Settings/General/ServerMAC"]),
            leaf("StreamingPort", call.request.url.port or 8866),
        )
    )


async def setting_get(call: Call) -> Reply:
    value = SETTINGS.get(call.required("key"), "")
    return Reply(xml=(leaf("value", value),), json={"value": value}, json_stat=True)


async def setting_version(call: Call) -> Reply:
    return Reply(
        xml=(leaf("current", READABLE_VERSION), leaf("available", READABLE_VERSION)),
        json={"current": READABLE_VERSION, "available": READABLE_VERSION},
    )


# -- system ----------------------------------------------------------------------------------------
async def system_status(call: Call) -> Reply:
    """Each device's activities; recordings on air show on the last idle devices (live takes the first)."""
    state = call.state
    now = time.time()
    activities: list[list[tuple[str, str]]] = [
        [] if lease is None else [(lease.activity, lease.file)] for _, _, lease in state.tuners.devices()
    ]
    idle = [a for a in reversed(activities) if not a] or activities[-1:]
    on_air = [r for r in state.store.recordings.values() if r.status(now) == "recording"]
    for i, rec in enumerate(on_air):
        if idle:
            idle[min(i, len(idle) - 1)].append(("Recording", rec.file))
    devices = [
        (oid, ident, acts) for (oid, ident, _), acts in zip(state.tuners.devices(), activities, strict=True)
    ]
    if call.json:
        return Reply(
            json={
                "devices": [
                    {
                        "oid": oid,
                        "identifier": ident,
                        "activities": [{"type": kind, "file": path} for kind, path in acts],
                    }
                    for oid, ident, acts in devices
                ]
            }
        )
    xml_devices = [
        el("Device", [leaf(kind, path) for kind, path in acts], attrs={"oid": oid, "identifier": ident})
        for oid, ident, acts in devices
    ]
    return Reply(xml=(el("devices", xml_devices),))


async def system_space(call: Call) -> Reply:
    dirs = [("Default", DISK_TOTAL, DISK_FREE), ("Movies", DISK_TOTAL // 2, DISK_FREE // 2)]
    if call.json:
        return Reply(json=[{"name": n, "total": t, "free": f} for n, t, f in dirs])
    return Reply(
        xml=tuple(el("directory", leaf("total", t), leaf("free", f), attrs={"name": n}) for n, t, f in dirs)
    )


async def system_recordings(call: Call) -> Reply:
    now = time.time()
    statuses = [r.status(now) for r in call.state.store.recordings.values()]
    counts = {
        "pending": statuses.count("pending"),
        "inprogress": statuses.count("recording"),
        "available": statuses.count("ready"),
        "failed": statuses.count("failed"),
        "conflict": statuses.count("conflict"),
        "deleted": 0,
    }
    return Reply(xml=tuple(leaf(k, v) for k, v in counts.items()), json=counts)


async def system_epg_summary(call: Call) -> Reply:
    stamp = int(call.state.started_wall)
    return Reply(xml=(leaf("last_update", stamp),), json={"last_update": stamp})


METHODS: Mapping[str, Handler] = {
    "session.initiate": session_initiate,
    "session.login": session_login,
    "session.valid": session_valid,
    "session.logout": session_logout,
    "setting.list": setting_list,
    "setting.get": setting_get,
    "setting.version": setting_version,
    "system.status": system_status,
    "system.space": system_space,
    "system.recordings": system_recordings,
    "system.epg.summary": system_epg_summary,
    **api_channels.METHODS,
    **api_recordings.METHODS,
    **api_transcode.METHODS,
}
#: answered without a logged-in sid; recording.lastupdated so Kodi can ping, segments are found by sid
PUBLIC_METHODS = frozenset(
    {"session.initiate", "session.login", "recording.lastupdated", *api_transcode.SEGMENT_METHODS}
)


def _fault_kind(method: str) -> FaultKind:
    if method in api_transcode.SEGMENT_METHODS:
        return "segment"
    if method in api_transcode.PLAYLIST_METHODS:
        return "playlist"
    return "api"


async def service(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    params: Mapping[str, str] = request.query
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        merged = MultiDict(request.query)
        merged.extend(await request.post())  # type: ignore[arg-type]
        params = merged
    method = params.get("method", "").strip().lower()
    handler = METHODS.get(method)
    state.counters.api_calls[method if handler else "(unknown)"] += 1
    kind = _fault_kind(method)
    if kind == "segment":
        state.counters.segment_requests += 1
    elif kind == "playlist":
        state.counters.playlist_requests += 1
    if state.faults.take_500(kind):
        return web.Response(status=500, text="Internal Server Error\n")
    if kind == "api" and (delay := state.faults.take_slow_api(method)):
        with abortable(state, request) as aborted:
            if await nap(aborted, delay):
                return web.Response(status=500, text="Internal Server Error\n")
    as_json = wants_json(request)
    if handler is None:
        return render_error(
            ApiError(state.config.unknown_method_code, state.config.unknown_method_message), as_json
        )
    call = Call(request, state, params, as_json, method, state.session(params.get("sid")))
    public = method in PUBLIC_METHODS or (method == "channel.icon" and state.config.icons_without_sid)
    if call.session is None and not public:
        state.counters.code8 += 1
        return render_error(ApiError(8, state.config.code8_message), as_json)
    try:
        result = await handler(call)
    except ApiError as error:
        return render_error(error, as_json)
    except OverflowError:  # the bounded recording and rule tables are full
        return render_error(invalid_args(), as_json)
    if isinstance(result, web.StreamResponse):
        return result
    return render(result, as_json)
