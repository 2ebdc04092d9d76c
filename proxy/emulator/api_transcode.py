"""HLS transcodes (``channel.transcode.*``, ``recording.transcode.*``) and timeshift (``channel.stream.*``).

NextPVR keys a transcode by the session id alone: one per sid, a second initiate replaces the first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

from aiohttp import web

from proxy.emulator.api_channels import channel_arg
from proxy.emulator.call import Call, Handler
from proxy.emulator.data import Channel, channel_by_number
from proxy.emulator.faults import GARBAGE_PLAYLIST, leaky_lines
from proxy.emulator.feeds import SegmentedFile
from proxy.emulator.hls import playlist_text, segment_bytes
from proxy.emulator.render import ApiError, Node, Reply, el, invalid_args, leaf
from proxy.emulator.state import Timeshift, Transcode
from proxy.emulator.streams import NO_TUNER, send_segment

__all__ = ["METHODS", "PLAYLIST_METHODS", "SEGMENT_METHODS"]

NO_TUNER_CODE = 9
TRANSCODE_FAILED = (10, "Transcode failed")
PROFILE_NOT_DEFINED = (11, "Transcode profile not defined")
SEGMENT_METHODS = frozenset({"channel.transcode.segment", "recording.transcode.segment"})
PLAYLIST_METHODS = frozenset({"channel.transcode.m3u8", "recording.transcode.m3u8"})
M3U8 = "application/x-mpegURL"


def _not_found() -> web.Response:
    return web.Response(status=404, text="Not Found\n")


def _transcode_channel(call: Call) -> Channel:
    if call.arg("channel_id") is None and call.arg("channel") is not None:
        channel = channel_by_number(call.required("channel"))  # X-NEWA passes the number
        if channel is None:
            raise invalid_args()
        return channel
    return channel_arg(call, "channel_id", "channeloid")


async def _initiate(call: Call, kind: Literal["channel", "recording"]) -> Reply:
    state, cfg = call.state, call.state.config
    profile = call.required("profile")
    recording_id: int | None = None
    if kind == "channel":
        channel = _transcode_channel(call)
    else:
        rec = state.store.recordings.get(call.int_arg("recording_id"))
        if rec is None or not rec.has_media(time.time()):
            raise invalid_args()
        channel, recording_id = rec.channel, rec.id
    if profile not in cfg.profiles:
        raise ApiError(*PROFILE_NOT_DEFINED)
    state.end_transcode(call.sid, "replaced")
    lease = None
    if kind == "channel" or cfg.recording_transcode_uses_tuner:
        lease = state.acquire_tuner(channel)
        if lease is None:
            raise ApiError(NO_TUNER_CODE, NO_TUNER)
    now = time.monotonic()
    base = state.feeds.index_at(channel, now) - cfg.initial_segments + 1 if kind == "channel" else 0
    transcode = Transcode(
        id=state.next_id(),
        sid=call.sid,
        kind=kind,
        channel=channel,
        recording_id=recording_id,
        profile=profile,
        started_at=now,
        ready_at=now + cfg.transcode_ready_seconds,
        base_index=base,
        last_activity=now,
        lease=lease,
    )
    state.transcodes[call.sid] = transcode
    state.transcode_history.append(transcode)
    state.counters.transcodes_started += 1
    if state.faults.take_transcode_death():
        state.kill_transcoder(transcode)
    state.changed()
    return Reply(json={}, json_stat=True)


async def channel_transcode_initiate(call: Call) -> Reply:
    return await _initiate(call, "channel")


async def recording_transcode_initiate(call: Call) -> Reply:
    return await _initiate(call, "recording")


async def transcode_status(call: Call) -> Reply:
    transcode = call.state.transcodes.get(call.sid)
    if transcode is None or transcode.dead:
        raise ApiError(*TRANSCODE_FAILED)
    percentage = transcode.percentage(time.monotonic(), call.state.config.transcode_ready_seconds)
    final = percentage >= 100
    return Reply(
        xml=(leaf("percentage", percentage), leaf("final", final)),
        json={"percentage": percentage, "final": final},
        json_stat=True,
    )


async def transcode_m3u8(call: Call) -> web.StreamResponse:
    state = call.state
    transcode = state.transcodes.get(call.sid)
    if transcode is None or transcode.dead:
        return _not_found()
    now = time.monotonic()
    transcode.last_activity = now
    if transcode.first_playlist_at is None:
        transcode.first_playlist_at = now
        state.changed()
    if state.faults.take_garbage():
        return web.Response(body=GARBAGE_PLAYLIST, content_type=M3U8)
    text = playlist_text(state, transcode, call.request)
    if state.faults.take_leaky():
        head, _, rest = text.partition("\n")
        origin = f"{call.request.scheme}://{call.request.host}"
        text = f"{head}\n{leaky_lines(origin, call.sid or '')}{rest}"
    return web.Response(text=text, content_type=M3U8)


async def transcode_segment(call: Call) -> web.StreamResponse:
    """The query-only segment URI style: ``?method=channel.transcode.segment&sid=&transcode=&segment=``."""
    try:
        transcode_id, n = int(call.params.get("transcode", "")), int(call.params.get("segment", ""))
    except ValueError:
        return _not_found()
    body = segment_bytes(call.state, call.params.get("sid"), transcode_id, n)
    if body is None:
        return _not_found()
    return await send_segment(call.request, call.state, body)


async def transcode_lease(call: Call) -> Reply | web.StreamResponse:
    """Renews the transcode, the timeshift buffer and the /live reads of this session; 404 if none."""
    if not call.state.renew(call.sid):
        return _not_found()
    return Reply(json={}, json_stat=True)


async def transcode_stop(call: Call) -> Reply:
    call.state.end_transcode(call.sid, "stopped")
    return Reply(json={}, json_stat=True)


# -- timeshift ---------------------------------------------------------------------------------------------
async def stream_start(call: Call) -> Reply:
    state = call.state
    channel = channel_arg(call, "channel_id", "channeloid")
    state.end_timeshift(call.sid)
    lease = state.acquire_tuner(channel)
    if lease is None:
        raise ApiError(NO_TUNER_CODE, NO_TUNER)
    now = time.monotonic()
    first = state.feeds.index_at(channel, now)
    state.timeshifts[call.sid] = Timeshift(
        call.sid, channel, lease, now, now, SegmentedFile(state.feeds, channel, first)
    )
    state.counters.timeshifts_started += 1
    state.changed()
    return Reply(json={}, json_stat=True)


async def stream_info(call: Call) -> Reply | web.StreamResponse:
    """Raw ``<map>`` XML whatever the format, as the real server sends it."""
    state = call.state
    shift = state.timeshifts.get(call.sid)
    if shift is None:
        return _not_found()
    now = time.monotonic()
    shift.last_renewal = now
    segments = shift.segments(state.feeds, state.config.timeshift_max_seconds, now)
    complete = segments >= state.feeds.segments_for(state.config.timeshift_max_seconds)
    duration_ms = int(min(now - shift.started_at, state.config.timeshift_max_seconds) * 1000)
    info: Node = el(
        "map",
        leaf("stream_duration", duration_ms),
        leaf("stream_length", shift.file.size(segments)),
        leaf("complete", complete),
    )
    return Reply(raw_xml=info)


async def stream_stop(call: Call) -> Reply:
    call.state.end_timeshift(call.sid)
    return Reply(json={}, json_stat=True)


METHODS: Mapping[str, Handler] = {
    "channel.transcode.initiate": channel_transcode_initiate,
    "channel.transcode.status": transcode_status,
    "channel.transcode.m3u8": transcode_m3u8,
    "channel.transcode.segment": transcode_segment,
    "channel.transcode.lease": transcode_lease,
    "channel.transcode.stop": transcode_stop,
    "recording.transcode.initiate": recording_transcode_initiate,
    "recording.transcode.status": transcode_status,
    "recording.transcode.m3u8": transcode_m3u8,
    "recording.transcode.segment": transcode_segment,
    "recording.transcode.lease": transcode_lease,
    "recording.transcode.stop": transcode_stop,
    "channel.stream.start": stream_start,
    "channel.stream.info": stream_info,
    "channel.stream.stop": stream_stop,
}
