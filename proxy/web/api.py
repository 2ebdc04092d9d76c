"""A small JSON API over the line-up, the guide and NextPVR's recordings.

- ``GET /api/channels``
- ``GET /api/guide?channel_id=&start=&end=``: times as epoch seconds or ISO 8601 (a time
  without a zone is UTC); ``start`` defaults to now, ``end`` to a day later; at most
  ``MAX_GUIDE_SPAN`` apart
- ``GET /api/epg?start=&end=``: every channel's programmes in one answer (the page's
  now/next and guide grid); at most ``MAX_EPG_SPAN`` apart, defaults as for ``/api/guide``
- ``GET /api/recordings?filter=ready|pending|recording|failed|conflict|all`` and
  ``GET /api/recordings/{id}``
- ``POST /api/recordings``: ``{"event_id": n}`` or ``{"channel_id": n, "start": t,
  "duration": seconds, "name": "..."}``, optionally ``pre_padding``/``post_padding``
  (minutes; default from ``dvr``); through ``recording.save``
- ``DELETE /api/recordings/{id}``: through ``recording.delete``

Write actions need ``auth.admin_key`` in ``X-API-Key`` or ``Authorization: Bearer``;
without an admin key configured they are off (403). Errors are JSON (the error middleware
does that for every ``/api/`` path) and a validation error names its field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
import unicodedata
from typing import Any

from aiohttp import hdrs, web

from proxy.errors import AdminKeyRequired, BadRequest, BodyTooLarge, Forbidden, NextPVRFailed, ProxyError
from proxy.keys import CHANNELS_KEY, CLIENT_KEY, CONFIG_KEY, GROUPS_KEY
from proxy.lineup.hdhr import is_hd
from proxy.lineup.m3u import tvg_id
from proxy.nextpvr.client import RecordingFilter
from proxy.nextpvr.models import Channel, Listing, Recording, RecordingStatus
from proxy.security import key_matches, presented_key
from proxy.web.params import is_ascii_id, parse_channel_id, parse_id, public_base
from proxy.web.routes import add_route, claim

__all__ = ["MAX_EPG_SPAN", "MAX_GUIDE_SPAN", "setup"]

#: longest /api/guide window (NextPVR answers a whole channel's EPG in one document)
MAX_GUIDE_SPAN = 14 * 86400
#: longest /api/epg window: it asks NextPVR once per channel
MAX_EPG_SPAN = 2 * 86400
#: channels whose listings /api/epg fetches at once
_EPG_CONCURRENCY = 4
_DEFAULT_GUIDE_SPAN = 86400
_MAX_DURATION = 24 * 3600
_MAX_PADDING = 600
_MAX_NAME = 200
#: character categories refused in a recording name: controls, surrogates, line/paragraph separators
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})
_FILTERS: tuple[RecordingFilter, ...] = ("all", "ready", "pending", "recording", "failed", "conflict")
_SCHEDULE_FIELDS = frozenset({"event_id", "channel_id", "start", "duration", "name", "pre_padding",
                              "post_padding"})
_NO_STORE = {hdrs.CACHE_CONTROL: "no-store"}
#: NextPVR's "Invalid Args" code: what it answers to an event or time it will not record
_INVALID_ARGS = 2


# -- helpers ----------------------------------------------------------------------------


def require_admin(request: web.Request) -> None:
    admin = request.app[CONFIG_KEY].auth.admin_key
    if not admin:
        raise Forbidden("DVR write actions are off: set auth.admin_key in the proxy's configuration "
                        "to enable them")
    supplied = presented_key(request, query=False)
    if not supplied:
        raise AdminKeyRequired("this action needs the admin key")
    if not key_matches(supplied, [admin]):
        raise AdminKeyRequired("the admin key is wrong")


def parse_time(value: object, field: str) -> float:
    """Epoch seconds (number or digits) or ISO 8601; a time without a zone is UTC."""
    if isinstance(value, bool):
        raise BadRequest(f"{field} must be epoch seconds or an ISO 8601 time", field=field)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if not text.isascii():  # float() and fromisoformat() take other scripts' digits too
            raise BadRequest(f"{field} must be epoch seconds or an ISO 8601 time (ASCII digits)", field=field)
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise BadRequest(f"{field} must be epoch seconds or an ISO 8601 time",
                                 field=field) from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            seconds = when.timestamp()
    else:
        raise BadRequest(f"{field} must be epoch seconds or an ISO 8601 time", field=field)
    if not math.isfinite(seconds) or not 0 <= seconds < 2**33:
        raise BadRequest(f"{field} is out of range", field=field)
    return seconds


def _int(body: dict[str, Any], field: str, *, low: int, high: int) -> int:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and is_ascii_id(value.strip(), 19):
            value = int(value.strip())
        else:
            raise BadRequest(f"{field} must be an integer", field=field)
    if not low <= value <= high:
        raise BadRequest(f"{field} must be between {low} and {high}", field=field)
    return value


def _recording_id(request: web.Request) -> int:
    return parse_id(request.match_info["recording_id"], "recording_id", "a NextPVR recording id")


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _channel_json(channel: Channel, groups: tuple[str, ...], base: str) -> dict[str, Any]:
    return {
        "id": channel.id,
        "tvg_id": tvg_id(channel),
        "name": channel.name,
        "number": channel.formatted_number,
        "kind": channel.kind,
        "hd": is_hd(channel),
        "groups": list(groups),
        "icon_url": f"{base}/icons/{channel.id}" if channel.has_icon else None,
        "hls_url": f"{base}/live/{channel.id}.m3u8",
        "ts_url": f"{base}/live/{channel.id}.ts",
    }


def _listing_json(item: Listing) -> dict[str, Any]:
    return {
        "event_id": item.id,
        "channel_id": item.channel_id,
        "title": item.title,
        "subtitle": item.subtitle,
        "description": item.description,
        "start": int(item.start),
        "end": int(item.end),
        "start_utc": _iso(item.start),
        "end_utc": _iso(item.end),
        "genres": list(item.genres),
        "season": item.season,
        "episode": item.episode,
        "year": item.year,
        "original_air_date": item.original_air_date.isoformat() if item.original_air_date else None,
        "firstrun": item.firstrun,
        "significance": item.significance,
        "rating": item.rating,
    }


def _recording_json(rec: Recording, base: str) -> dict[str, Any]:
    playable = rec.status in (RecordingStatus.READY, RecordingStatus.RECORDING)
    return {
        "id": rec.id,
        "name": rec.name,
        "subtitle": rec.subtitle,
        "description": rec.description,
        "channel": rec.channel,
        "channel_id": rec.channel_id or None,
        "status": rec.status.value,
        "start": int(rec.start),
        "end": int(rec.end),
        "start_utc": _iso(rec.start),
        "duration": rec.duration_seconds,
        "pre_padding": rec.pre_padding,
        "post_padding": rec.post_padding,
        "epg_event_id": rec.epg_event_id,
        "recurring": rec.recurring,
        "size": rec.size,
        "reason": rec.reason or None,
        "url": f"{base}/recordings/{rec.id}" if playable else None,
    }


# -- handlers ---------------------------------------------------------------------------


async def list_channels(request: web.Request) -> web.Response:
    base = public_base(request)
    channels = await request.app[CHANNELS_KEY].channels()
    groups = await request.app[GROUPS_KEY].memberships()
    body = {"channels": [_channel_json(c, groups.get(c.id, ()), base) for c in channels]}
    return web.json_response(body, headers=_NO_STORE)


def _window(request: web.Request, longest: int) -> tuple[float, float]:
    query = request.query
    start = parse_time(query["start"], "start") if "start" in query else time.time()
    end = parse_time(query["end"], "end") if "end" in query else start + _DEFAULT_GUIDE_SPAN
    if end <= start:
        raise BadRequest("end must be after start", field="end")
    if end - start > longest:
        raise BadRequest(f"end may be at most {longest // 86400} days after start", field="end")
    return start, end


async def guide(request: web.Request) -> web.Response:
    channel_id = parse_channel_id(request.query.get("channel_id"), "channel_id")
    start, end = _window(request, MAX_GUIDE_SPAN)
    await request.app[CHANNELS_KEY].get(channel_id)
    listings = await request.app[CLIENT_KEY].channel_listings(channel_id, start, end)
    wanted = sorted((x for x in listings if x.end > start and x.start < end), key=lambda x: x.start)
    body = {"channel_id": channel_id, "start": int(start), "end": int(end),
            "listings": [_listing_json(x) for x in wanted]}
    return web.json_response(body, headers=_NO_STORE)


async def epg(request: web.Request) -> web.Response:
    start, end = _window(request, MAX_EPG_SPAN)
    channels = await request.app[CHANNELS_KEY].channels()
    client = request.app[CLIENT_KEY]
    gate = asyncio.Semaphore(_EPG_CONCURRENCY)

    async def one(channel: Channel) -> dict[str, Any]:
        async with gate:
            try:
                listings = await client.channel_listings(channel.id, start, end)
            except ProxyError as exc:
                # one channel's missing guide must not blank the whole grid
                return {"channel_id": channel.id, "error": exc.message, "listings": []}
        wanted = sorted((x for x in listings if x.end > start and x.start < end), key=lambda x: x.start)
        return {"channel_id": channel.id, "error": None, "listings": [_listing_json(x) for x in wanted]}

    rows = await asyncio.gather(*(one(c) for c in channels))
    body = {"start": int(start), "end": int(end), "now": int(time.time()), "channels": rows}
    return web.json_response(body, headers=_NO_STORE)


async def list_recordings(request: web.Request) -> web.Response:
    name = request.query.get("filter", "all")
    chosen = next((f for f in _FILTERS if f == name), None)
    if chosen is None:
        raise BadRequest(f"filter must be one of {', '.join(_FILTERS)}", field="filter")
    recordings = await request.app[CLIENT_KEY].recording_list(chosen)
    if chosen != "all":
        recordings = tuple(r for r in recordings if r.status.value == chosen)
    base = public_base(request)
    body = {"recordings": [_recording_json(r, base) for r in sorted(recordings, key=lambda r: r.start)]}
    return web.json_response(body, headers=_NO_STORE)


async def get_recording(request: web.Request) -> web.Response:
    recording_id = _recording_id(request)
    rec = await request.app[CLIENT_KEY].recording_get(recording_id)
    return web.json_response(_recording_json(rec, public_base(request)), headers=_NO_STORE)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG_KEY].server.client_max_size
        raise BodyTooLarge(f"the request body is larger than {limit} bytes") from None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("the body must be a JSON object", field="body") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    return body


async def schedule_recording(request: web.Request) -> web.Response:
    require_admin(request)
    body = await _json_body(request)
    unknown = sorted(set(body) - _SCHEDULE_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
    dvr = request.app[CONFIG_KEY].dvr
    pre = _int(body, "pre_padding", low=0, high=_MAX_PADDING) if "pre_padding" in body \
        else dvr.pre_padding_minutes
    post = _int(body, "post_padding", low=0, high=_MAX_PADDING) if "post_padding" in body \
        else dvr.post_padding_minutes
    client = request.app[CLIENT_KEY]
    if "event_id" in body:
        extra = sorted({"channel_id", "start", "duration", "name"} & set(body))
        if extra:
            raise BadRequest(f"give either event_id or channel_id/start/duration, not {extra[0]} too",
                             field=extra[0])
        event_id = _int(body, "event_id", low=1, high=2**63 - 1)
        field = "event_id"
        save: dict[str, Any] = {"event_id": event_id}
    else:
        for required in ("channel_id", "start", "duration"):
            if required not in body:
                raise BadRequest(f"{required} is required (or give event_id)", field=required)
        channel_id = _int(body, "channel_id", low=1, high=2**31 - 1)
        start = parse_time(body["start"], "start")
        duration = _int(body, "duration", low=60, high=_MAX_DURATION)
        if start + duration <= time.time():
            raise BadRequest("the recording would end in the past", field="start")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME):
            raise BadRequest(f"name must be a non-empty string of at most {_MAX_NAME} characters",
                             field="name")
        if name is not None and any(unicodedata.category(c) in _UNPRINTABLE for c in name):
            # NUL, newlines and lone surrogates would reach NextPVR's query string and its database
            raise BadRequest("name must not contain control characters", field="name")
        await request.app[CHANNELS_KEY].get(channel_id)
        field = "channel_id"
        save = {"channel_id": channel_id, "start": int(start), "duration": duration,
                "name": name.strip() if name else None}
    try:
        await client.recording_save(**save, pre_padding=pre, post_padding=post)
    except NextPVRFailed as exc:
        if exc.code != _INVALID_ARGS:
            raise
        raise BadRequest(f"NextPVR refused to schedule this recording ({exc.message})", field=field) from exc
    created = await _find_scheduled(request, save)
    base = public_base(request)
    result: dict[str, Any] = {"scheduled": True,
                              "recording": _recording_json(created, base) if created else None}
    headers = dict(_NO_STORE)
    if created is not None:
        headers[hdrs.LOCATION] = f"/api/recordings/{created.id}"
    return web.json_response(result, status=201, headers=headers)


async def _find_scheduled(request: web.Request, save: dict[str, Any]) -> Recording | None:
    """NextPVR does not return the new recording's id: find it in the list."""
    recordings = await request.app[CLIENT_KEY].recording_list("all")
    if "event_id" in save:
        matches = [r for r in recordings if r.epg_event_id == save["event_id"]]
    else:
        matches = [r for r in recordings
                   if r.channel_id == save["channel_id"] and int(r.start) == save["start"]]
    return max(matches, key=lambda r: r.id, default=None)


async def delete_recording(request: web.Request) -> web.Response:
    require_admin(request)
    recording_id = _recording_id(request)
    client = request.app[CLIENT_KEY]
    await client.recording_get(recording_id)  # 404 for an unknown id (NextPVR would say "ok")
    await client.recording_delete(recording_id)
    return web.json_response({"deleted": recording_id}, headers=_NO_STORE)


def setup(app: web.Application) -> None:
    get, post, delete = hdrs.METH_GET, hdrs.METH_POST, hdrs.METH_DELETE
    add_route(app, get, "/api/channels", list_channels, json_errors=True)
    add_route(app, get, "/api/guide", guide, json_errors=True)
    add_route(app, get, "/api/epg", epg, json_errors=True)
    add_route(app, get, "/api/recordings", list_recordings, json_errors=True)
    add_route(app, post, "/api/recordings", schedule_recording, json_errors=True)
    add_route(app, get, "/api/recordings/{recording_id}", get_recording, json_errors=True)
    add_route(app, delete, "/api/recordings/{recording_id}", delete_recording, json_errors=True)
    claim(app, "/api/", prefix=True, json_errors=True)  # an unknown API path answers JSON too
