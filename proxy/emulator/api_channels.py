"""channel.list, channel.groups, channel.icon, channel.listings(.current) and channel.m3u."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from proxy.emulator.call import Call, Handler
from proxy.emulator.data import ALL_CHANNELS_GROUP, CHANNELS, GROUPS, Channel, Programme, channel_by_oid
from proxy.emulator.render import Node, Reply, el, invalid_args, leaf
from proxy.emulator.state import EmulatorState

__all__ = ["METHODS", "channel_arg", "json_listing", "xml_listing"]


def channel_arg(call: Call, *names: str) -> Channel:
    """The channel named by the first of ``names`` present (an OID); Invalid Args if none is valid."""
    for name in names:
        if call.arg(name) is not None:
            channel = channel_by_oid(call.int_arg(name))
            if channel is None:
                raise invalid_args()
            return channel
    raise invalid_args()


def _json_channel(c: Channel) -> dict[str, Any]:
    return {
        "channelId": c.oid,
        "channelNumber": c.number,
        "channelMinor": c.minor,
        "channelNumberFormated": c.formatted_number,
        "channelType": c.type,
        "channelName": c.name,
        "channelDetails": "",
        "channelIcon": c.icon is not None,
    }


def _xml_channel(c: Channel, extras: bool) -> Node:
    children = [
        leaf("id", c.oid),
        leaf("name", c.name),
        leaf("number", c.number),
        leaf("minor", c.minor),
        leaf("formatted-number", c.formatted_number),
        leaf("type", hex(c.type)),
        leaf("icon", c.icon is not None),
    ]
    if extras:
        children += [leaf("epg", c.epg), el("groups", [leaf("group", g) for g in c.groups])]
    return el("channel", children)


async def channel_list(call: Call) -> Reply:
    group = call.arg("group_id")
    channels = [
        c
        for c in CHANNELS
        if group is None
        or group.lower() == ALL_CHANNELS_GROUP.lower()
        or group.lower() in (g.lower() for g in c.groups)
    ]
    if call.json:
        return Reply(
            json={"channels": [_json_channel(c) for c in channels]},
            json_stat=call.state.config.json_list_stat,
        )
    extras = call.bool_arg("extras")
    return Reply(xml=(el("channels", [_xml_channel(c, extras) for c in channels]),))


async def channel_groups(call: Call) -> Reply:
    if call.json:
        return Reply(json={"groups": list(GROUPS)}, json_stat=call.state.config.json_list_stat)
    return Reply(xml=(el("groups", [el("group", leaf("name", g)) for g in GROUPS]),))


async def channel_icon(call: Call) -> web.StreamResponse:
    channel = channel_by_oid(call.int_arg("channel_id", 0))
    if channel is None or channel.icon is None:
        return web.Response(status=404, text="Not Found\n")
    return web.Response(body=call.state.icons[channel.icon], content_type="image/png")


def _recording_of(state: EmulatorState, prog: Programme, now: float) -> tuple[str, int] | None:
    rec = state.store.by_event(prog.event_id)
    return None if rec is None else (rec.status(now), rec.id)


def xml_listing(prog: Programme, scheduled: tuple[str, int] | None) -> Node:
    children = [
        leaf("id", prog.event_id),
        leaf("name", prog.name),
        leaf("description", prog.description),
        leaf("subtitle", prog.subtitle),
        leaf("start", prog.start * 1000),
        leaf("end", prog.end * 1000),
        leaf("genre", prog.genres[0] if prog.genres else ""),
        el("genres", [leaf("genre", g) for g in prog.genres]),
        leaf("firstrun", prog.firstrun),
    ]
    optional = {
        "season": prog.season,
        "episode": prog.episode,
        "year": prog.year,
        "original": prog.original,
        "significance": prog.significance,
        "rating": prog.rating,
    }
    children += [leaf(k, v) for k, v in optional.items() if v]
    if scheduled:
        children += [leaf("recording_status", scheduled[0].capitalize()), leaf("recording_id", scheduled[1])]
    return el("l", children)


def json_listing(prog: Programme, scheduled: tuple[str, int] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": prog.event_id,
        "name": prog.name,
        "description": prog.description,
        "subtitle": prog.subtitle,
        "genres": list(prog.genres),
        "firstrun": prog.firstrun,
        "start": prog.start,
        "end": prog.end,
    }
    optional = {
        "season": prog.season,
        "episode": prog.episode,
        "year": prog.year,
        "original": prog.original,
        "significance": prog.significance,
        "rating": prog.rating,
    }
    body.update({k: v for k, v in optional.items() if v})
    if scheduled:
        body["recordingStatus"], body["recordingId"] = scheduled
    return body


async def channel_listings(call: Call) -> Reply:
    channel = channel_arg(call, "channel_id")
    start = call.int_arg("start") if call.arg("start") else None
    end = call.int_arg("end") if call.arg("end") else None
    now = time.time()
    progs = call.state.guide.listings(channel, now, start, end)
    marks = [_recording_of(call.state, p, now) for p in progs]
    if call.json:
        return Reply(
            json={"listings": [json_listing(p, m) for p, m in zip(progs, marks, strict=True)]},
            json_stat=call.state.config.json_list_stat,
        )
    return Reply(xml=(el("listings", [xml_listing(p, m) for p, m in zip(progs, marks, strict=True)]),))


async def channel_listings_current(call: Call) -> Reply:
    now = time.time()
    channels = [channel_arg(call, "channel_id")] if call.arg("channel_id") else list(CHANNELS)
    pairs = []
    for c in channels:
        current = call.state.guide.at(c, now)
        pairs.append((c, [current, call.state.guide.at(c, current.end)]))
    if call.json:
        return Reply(
            json=[
                {
                    "channel": {
                        "channel_name": c.name,
                        "channel_id": c.oid,
                        "channel_formatted_number": c.formatted_number,
                        "listings": [json_listing(p, _recording_of(call.state, p, now)) for p in progs],
                    }
                }
                for c, progs in pairs
            ]
        )
    return Reply(
        xml=(
            el(
                "listings",
                [
                    el(
                        "channel",
                        [xml_listing(p, _recording_of(call.state, p, now)) for p in progs],
                        attrs={"id": c.oid, "name": c.name, "number": c.formatted_number},
                    )
                    for c, progs in pairs
                ],
            ),
        )
    )


async def channel_m3u(call: Call) -> web.StreamResponse:
    base = f"{call.request.scheme}://{call.request.host}"
    lines = [f'#EXTM3U url-tvg="{base}/service?method=channel.xmltv.x"']
    for c in CHANNELS:
        lines.append(f'#EXTINF:0 tvg-id="nextpvr-{c.oid}" tvg-chno="{c.formatted_number}", {c.name}')
        lines.append(f"{base}/live?channel={c.formatted_number}")
    return web.Response(text="\n".join(lines) + "\n", content_type="audio/x-mpegurl")


METHODS: Mapping[str, Handler] = {
    "channel.list": channel_list,
    "channel.groups": channel_groups,
    "channel.icon": channel_icon,
    "channel.listings": channel_listings,
    "channel.listings.current": channel_listings_current,
    "channel.m3u": channel_m3u,
}
