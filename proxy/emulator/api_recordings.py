"""recording.* methods: list, save, delete, recurring rules, lastupdated, resume points, EDL."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from proxy.emulator.call import Call, Handler
from proxy.emulator.data import channel_by_oid
from proxy.emulator.recordings import STATUSES, Recording, Recurring
from proxy.emulator.render import Node, Reply, el, invalid_args, leaf

__all__ = ["METHODS"]

#: no filter: what X-NEWA uses for "upcoming" [inferred]
UPCOMING = ("pending", "conflict")
DEFAULT_PRE_PADDING = 1
DEFAULT_POST_PADDING = 2


def _display_time(epoch: int) -> str:
    t = time.gmtime(epoch)
    hour = t.tm_hour % 12 or 12
    ampm = "AM" if t.tm_hour < 12 else "PM"
    return f"{t.tm_mon}/{t.tm_mday:02d}/{t.tm_year} {hour}:{t.tm_min:02d}:{t.tm_sec:02d} {ampm}"


def _xml_recording(rec: Recording, status: str, size: int) -> Node:
    children = [
        leaf("id", rec.id),
        leaf("name", rec.name),
        leaf("desc", rec.desc),
        leaf("subtitle", rec.subtitle),
        leaf("start_time", _display_time(rec.start)),
        leaf("start_time_ticks", rec.start),
        leaf("duration", f"{rec.duration // 3600:02d}:{rec.duration // 60 % 60:02d}"),
        leaf("duration_seconds", rec.duration),
        leaf("status", status.capitalize()),
        leaf("file", rec.file if status in ("recording", "ready") else ""),
        leaf("channel", rec.channel.name),
        leaf("channel_id", rec.channel.oid),
        leaf("pre_padding", rec.pre_padding),
        leaf("post_padding", rec.post_padding),
        leaf("epg_event_oid", rec.epg_event_id),
        leaf("epg_end_time_ticks", rec.epg_end),
        leaf("recurring_parent", rec.recurring_parent),
        leaf("recurring", rec.recurring_parent != 0),
        leaf("playback_position", rec.playback_position),
        leaf("played", rec.played),
        leaf("size", size),
        leaf("genre", rec.genres[0] if rec.genres else ""),
        el("genres", [leaf("genre", g) for g in rec.genres]),
    ]
    optional = {
        "season": rec.season,
        "episode": rec.episode,
        "year": rec.year,
        "original": rec.original,
        "significance": rec.significance,
        "reason": rec.reason,
    }
    children += [leaf(k, v) for k, v in optional.items() if v]
    if status == "pending":
        children.append(leaf("directory", rec.directory))
    return el("recording", children)


def _json_recording(rec: Recording, status: str, size: int) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "desc": rec.desc,
        "subtitle": rec.subtitle,
        "startTime": rec.start,
        "duration": rec.duration,
        "status": status,
        "file": rec.file if status in ("recording", "ready") else "",
        "channel": rec.channel.name,
        "channelId": rec.channel.oid,
        "epgEventId": rec.epg_event_id,
        "prePadding": rec.pre_padding,
        "postPadding": rec.post_padding,
        "recurring": rec.recurring_parent != 0,
        "recurringParent": rec.recurring_parent,
        "playbackPosition": rec.playback_position,
        "played": rec.played,
        "size": size,
        "genres": list(rec.genres),
        "season": rec.season,
        "episode": rec.episode,
        "year": rec.year,
        "original": rec.original,
        "significance": rec.significance,
        "reason": rec.reason,
        "quality": "",
    }


async def recording_list(call: Call) -> Reply:
    store, now = call.state.store, time.time()
    wanted: tuple[str, ...]
    if call.arg("recording_id") is not None:
        rec = store.recordings.get(call.int_arg("recording_id"))
        chosen = [rec] if rec else []
    else:
        name = (call.arg("filter") or "").lower()
        if name in ("", "upcoming"):
            wanted = UPCOMING
        elif name == "all":
            wanted = STATUSES
        elif name == "recent":
            wanted = ("ready",)
        elif name in STATUSES:
            wanted = (name,)
        else:
            raise invalid_args()
        chosen = [r for r in store.recordings.values() if r.status(now) in wanted]
        if name == "recent":
            chosen.sort(key=lambda r: r.start, reverse=True)
    rows = [(r, r.status(now), call.state.recording_size(r, now)) for r in chosen]
    if call.json:
        return Reply(
            json={"recordings": [_json_recording(*row) for row in rows]},
            json_stat=call.state.config.json_list_stat,
        )
    return Reply(xml=(el("recordings", [_xml_recording(*row) for row in rows]),))


def _paddings(call: Call) -> tuple[int, int]:
    pre, post = (
        call.int_arg("pre_padding", DEFAULT_PRE_PADDING),
        call.int_arg("post_padding", DEFAULT_POST_PADDING),
    )
    if not (0 <= pre <= 600 and 0 <= post <= 600):
        raise invalid_args()
    return pre, post


async def recording_save(call: Call) -> Reply:
    store, now = call.state.store, time.time()
    pre, post = _paddings(call)
    if call.arg("recording_id") is not None:
        rec = store.recordings.get(call.int_arg("recording_id"))
        if rec is None:
            raise invalid_args()
        rec.pre_padding, rec.post_padding = pre, post
        rec.name = call.arg("name") or rec.name
    elif call.arg("event_id") is not None:
        prog = call.state.guide.by_event_id(call.int_arg("event_id"), now)
        if prog is None or prog.end <= now:
            raise invalid_args()
        rec = store.schedule_programme(prog, pre, post)
    else:
        channel = channel_by_oid(call.int_arg("channel"))
        start, duration = call.int_arg("time_t"), call.int_arg("duration")
        if channel is None or duration <= 0 or start + duration <= now:
            raise invalid_args()
        rec = store.add(
            Recording(
                id=0,
                name=call.arg("name") or "Manual Recording",
                channel=channel,
                start=start,
                duration=duration,
                pre_padding=pre,
                post_padding=post,
            )
        )
    rec.directory = call.arg("directory_id") or rec.directory
    store.touch()
    call.state.changed()
    return Reply(json={}, json_stat=True)


async def recording_delete(call: Call) -> Reply:
    store = call.state.store
    rec_id = call.int_arg("recording_id")
    if store.recordings.pop(rec_id, None) is None:
        if not call.state.config.delete_unknown_ok:
            raise invalid_args()
    else:
        call.state.forget_recording(rec_id)
        store.touch()
        call.state.changed()
    return Reply(json={}, json_stat=True)


def _xml_rule(rule: Recurring) -> Node:
    rules = [
        leaf("ChannelOID", rule.channel.oid if rule.channel else 0),
        leaf("EPGTitle", rule.epg_title),
        leaf("StartTimeTicks", rule.start),
        leaf("EndTimeTicks", rule.end),
        leaf("Days", rule.days),
        leaf("PrePadding", rule.pre_padding),
        leaf("PostPadding", rule.post_padding),
        leaf("Keep", rule.keep),
        leaf("OnlyNewEpisodes", rule.only_new),
        leaf("RecordingDirectoryID", f"[{rule.directory}]"),
        leaf("AdvancedRules", rule.advanced),
    ]
    return el(
        "recurring",
        leaf("id", rule.id),
        leaf("type", rule.type),
        leaf("name", rule.name),
        el("matchrules", leaf("enabled", rule.enabled), el("Rules", rules)),
    )


def _json_rule(rule: Recurring) -> dict[str, Any]:
    return {
        "id": rule.id,
        "type": rule.type,
        "name": rule.name,
        "channelID": rule.channel.oid if rule.channel else 0,
        "channel": rule.channel.name if rule.channel else "",
        "period": rule.type,
        "keep": rule.keep,
        "prePadding": rule.pre_padding,
        "postPadding": rule.post_padding,
        "epgTitle": rule.epg_title,
        "directoryID": rule.directory,
        "days": rule.days,
        "enabled": rule.enabled,
        "onlyNewEpisodes": rule.only_new,
        "startTimeTicks": rule.start,
        "endTimeTicks": rule.end,
        "advancedRules": rule.advanced,
    }


async def recurring_list(call: Call) -> Reply:
    rules = list(call.state.store.recurrings.values())
    if call.json:
        return Reply(
            json={"recurrings": [_json_rule(r) for r in rules]}, json_stat=call.state.config.json_list_stat
        )
    return Reply(xml=(el("recurrings", [_xml_rule(r) for r in rules]),))


async def recurring_save(call: Call) -> Reply:
    store, now = call.state.store, time.time()
    pre, post = _paddings(call)
    existing = store.recurrings.get(call.int_arg("recurring_id")) if call.arg("recurring_id") else None
    if call.arg("recurring_id") and existing is None:
        raise invalid_args()
    if existing is not None:
        existing.pre_padding, existing.post_padding = pre, post
        existing.keep = call.int_arg("keep", existing.keep)
        existing.enabled = call.bool_arg("enabled", existing.enabled)
    elif call.arg("event_id") is not None:
        prog = call.state.guide.by_event_id(call.int_arg("event_id"), now)
        if prog is None:
            raise invalid_args()
        rule = store.add_rule(
            Recurring(
                0,
                call.int_arg("recurring_type", 1),
                prog.name,
                channel_by_oid(prog.channel_oid),
                prog.name,
                prog.start,
                prog.end,
                pre_padding=pre,
                post_padding=post,
                keep=call.int_arg("keep", 0),
                only_new=call.bool_arg("only_new"),
            )
        )
        store.apply_rule(rule, now)
    elif call.arg("start_time") is not None and call.arg("end_time") is not None:
        channel = channel_by_oid(call.int_arg("channel_id", 0))
        rule = store.add_rule(
            Recurring(
                0,
                call.int_arg("recurring_type", 3 if channel else 7),
                call.arg("name") or "Timeslot",
                channel,
                "",
                call.int_arg("start_time"),
                call.int_arg("end_time"),
                days=call.arg("day_mask") or "",
                pre_padding=pre,
                post_padding=post,
                keep=call.int_arg("keep", 0),
                advanced=call.arg("keyword") or call.arg("advanced") or "",
            )
        )
    else:
        # "neither event_id or start_time/end_time specified"
        raise invalid_args()
    store.touch()
    call.state.changed()
    return Reply(json={}, json_stat=True)


async def recurring_delete(call: Call) -> Reply:
    if not call.state.store.delete_rule(call.int_arg("recurring_id"), time.time()):
        raise invalid_args()
    call.state.store.touch()
    call.state.changed()
    return Reply(json={}, json_stat=True)


async def recording_lastupdated(call: Call) -> Reply:
    stamp = call.state.store.last_update(time.time(), call.bool_arg("ignore_resume"))
    return Reply(xml=(leaf("last_update", stamp),), json={"last_update": stamp}, json_stat=True)


async def recording_watched_set(call: Call) -> Reply:
    rec = call.state.store.recordings.get(call.int_arg("recording_id"))
    position = call.int_arg("position")
    if rec is None or position < 0:
        raise invalid_args()
    if position:  # NextPVR ignores position=0 (NexusPVR sends 1 instead)
        rec.playback_position = position
        rec.played = position >= rec.duration - 60
        call.state.store.touch_resume()
    return Reply(json={}, json_stat=True)


async def recording_edl(call: Call) -> Reply:
    rec = call.state.store.recordings.get(call.int_arg("recording_id"))
    if rec is None:
        raise invalid_args()
    breaks = [(s, min(s + 15, rec.duration)) for s in range(20, rec.duration - 10, 600)]
    if call.json:
        return Reply(json={"commercials": [{"start": s, "end": e} for s, e in breaks]})
    return Reply(
        xml=(el("commercials", [el("commercial", leaf("start", s), leaf("end", e)) for s, e in breaks]),)
    )


async def recording_forget(call: Call) -> Reply:
    call.int_arg("recording_id")
    return Reply(json={}, json_stat=True)


METHODS: Mapping[str, Handler] = {
    "recording.list": recording_list,
    "recording.save": recording_save,
    "recording.delete": recording_delete,
    "recording.recurring.list": recurring_list,
    "recording.recurring.save": recurring_save,
    "recording.recurring.delete": recurring_delete,
    "recording.lastupdated": recording_lastupdated,
    "recording.watched.set": recording_watched_set,
    "recording.edl": recording_edl,
    "recording.forget": recording_forget,
}
