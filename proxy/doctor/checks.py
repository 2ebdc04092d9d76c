"""``nextpvr-proxy doctor``: every check the proxy depends on, against the configured NextPVR.

Each check gives one :class:`Check` (OK / WARN / FAIL, a short explanation, and data for
``--json``). Checks that need a login are skipped (SKIP) once NextPVR is unreachable or the PIN
is refused, so the first failure is the one reported. Nothing here prints the PIN, a session
id or NextPVR's address: the output is meant to be attached to bug reports.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from proxy.config import Config
from proxy.doctor.probe import StreamProbe
from proxy.errors import LoginRefused, NextPVRTimeout, NextPVRUnreachable, ProxyError
from proxy.nextpvr.client import NextPVRClient
from proxy.nextpvr.models import Channel

__all__ = ["Check", "Doctor", "Status"]

Status = str  # "OK" | "WARN" | "FAIL" | "SKIP"
#: channels whose guide is asked for at once, and at most this many channels in all
_GUIDE_CONCURRENCY = 4
_GUIDE_MAX_CHANNELS = 200
_DAY = 86400.0


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "data": self.data}


class _Stop(Exception):
    """A check failed that every later check needs."""


class Doctor:
    def __init__(self, config: Config, client: NextPVRClient, *, probe_seconds: float = 5.0,
                 channel_id: int | None = None, transcode: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.client = client
        self.probe_seconds = probe_seconds
        self.channel_id = channel_id
        self.transcode = transcode
        self._clock = clock
        self.checks: list[Check] = []
        self._channels: tuple[Channel, ...] = ()

    async def run(self) -> list[Check]:
        steps: list[tuple[str, Callable[[], Awaitable[Check]]]] = [
            ("reachable", self.reachable), ("pin", self.pin_and_version), ("channels", self.channels),
            ("guide", self.guide), ("tuners", self.tuners), ("recordings", self.recordings),
            ("live", self.live),
        ]
        if self.transcode:
            steps.append(("transcode", self.transcode_check))
        stopped: str | None = None
        for name, step in steps:
            if stopped is not None:
                self.checks.append(Check(name, "SKIP", f"not checked: {stopped}"))
                continue
            try:
                result = await step()
            except _Stop as exc:
                stopped = str(exc)
                continue
            except ProxyError as exc:
                result = Check(name, "FAIL", exc.message)
            self.checks.append(result)
        return self.checks

    def _stop(self, check: Check, why: str) -> _Stop:
        self.checks.append(check)
        return _Stop(why)

    async def reachable(self) -> Check:
        try:
            await self.client.session_call("session.initiate", {"ver": "1.0", "device": "nextpvr-proxy-doctor"},
                                           None)
        except (NextPVRUnreachable, NextPVRTimeout) as exc:
            raise self._stop(Check("reachable", "FAIL", f"NextPVR is unreachable at nextpvr.base_url "
                                   f"({exc.message})"), "NextPVR is unreachable") from exc
        except ProxyError as exc:
            raise self._stop(Check("reachable", "FAIL", f"something answers at nextpvr.base_url, but not like "
                                   f"NextPVR ({exc.message})"), "NextPVR did not answer like NextPVR") from exc
        return Check("reachable", "OK", "NextPVR answers at nextpvr.base_url")

    async def pin_and_version(self) -> Check:
        try:
            settings = await self.client.setting_list()
        except LoginRefused as exc:
            raise self._stop(Check("pin", "FAIL", "NextPVR refused the PIN: check nextpvr.pin (the PIN set in "
                                   "NextPVR's Settings > Access)"), "the PIN was refused") from exc
        self.checks.append(Check("pin", "OK", "the PIN was accepted (logged in)"))
        version = settings.readable_version or None
        data = {"version": version, "version_number": settings.version}
        if not settings.version:
            return Check("version", "WARN", "setting.list names no version; the proxy is tested with 5.x-7.x",
                         data)
        if settings.version < 50000:
            return Check("version", "WARN", f"NextPVR {version}: the transcoder API the proxy uses needs 5.0 or "
                         "later", data)
        return Check("version", "OK", f"NextPVR {version}", data)

    async def channels(self) -> Check:
        self._channels = await self.client.channel_list()
        kinds = Counter(c.kind for c in self._channels)
        data = {"tv": kinds["tv"], "radio": kinds["radio"]}
        if not self._channels:
            raise self._stop(Check("channels", "FAIL", "NextPVR lists no channels", data), "no channels")
        if not kinds["tv"]:
            return Check("channels", "WARN", f"{kinds['radio']} radio channels and no TV channel", data)
        return Check("channels", "OK", f"{kinds['tv']} TV and {kinds['radio']} radio channels", data)

    async def guide(self) -> Check:
        now = self._clock()
        gate = asyncio.Semaphore(_GUIDE_CONCURRENCY)
        chosen = self._channels[:_GUIDE_MAX_CHANNELS]

        async def count(channel: Channel) -> int | None:
            async with gate:
                try:
                    return len(await self.client.channel_listings(channel.id, now, now + _DAY))
                except ProxyError:
                    return None

        counts = await asyncio.gather(*(count(c) for c in chosen))
        with_guide = sum(1 for n in counts if n)
        failed = sum(1 for n in counts if n is None)
        data = {"channels_checked": len(chosen), "with_programmes": with_guide, "errors": failed,
                "programmes": sum(n or 0 for n in counts)}
        text = f"{with_guide} of {len(chosen)} channels have programmes in the next 24 h"
        if not with_guide:
            return Check("guide", "FAIL" if failed == len(chosen) else "WARN", text + " (is the EPG loaded?)", data)
        if failed or with_guide < len(chosen):
            return Check("guide", "WARN", text + (f"; {failed} answered with an error" if failed else ""), data)
        return Check("guide", "OK", text, data)

    async def tuners(self) -> Check:
        status = await self.client.system_status()
        data = {"total": status.tuner_count, "in_use": status.busy_count}
        if not status.tuner_count:
            configured = self.config.nextpvr.tuner_count
            if configured:
                return Check("tuners", "OK", f"system.status lists no devices; nextpvr.tuner_count says {configured}",
                             data)
            return Check("tuners", "WARN", "system.status lists no devices: set nextpvr.tuner_count", data)
        return Check("tuners", "OK", f"{status.busy_count} of {status.tuner_count} tuners in use", data)

    async def recordings(self) -> Check:
        recordings = await self.client.recording_list("all")
        counts = Counter(r.status.value for r in recordings)
        data = dict(sorted(counts.items()))
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
        return Check("recordings", "OK", f"{len(recordings)} recordings ({summary})", data)

    def _probe_channel(self) -> Channel | None:
        if self.channel_id is not None:
            return next((c for c in self._channels if c.id == self.channel_id), None)
        return next((c for c in self._channels if c.kind == "tv"), None)

    async def live(self) -> Check:
        channel = self._probe_channel()
        if channel is None:
            what = f"channel {self.channel_id} is not in the line-up" if self.channel_id else "no TV channel"
            return Check("live", "FAIL", what)
        probe = StreamProbe()
        started = time.monotonic()
        stream = await self.client.open_session_stream(
            lambda sid, client_id: self.client.live_stream_url(channel.id, sid, client_id))
        async with stream:
            try:
                async with asyncio.timeout(self.probe_seconds):
                    async for chunk in stream.iter_chunks():
                        probe.feed(chunk)
            except TimeoutError:
                pass  # the read is meant to end here
        result = probe.result(time.monotonic() - started)
        data = {"channel_id": channel.id, "channel": channel.formatted_number, **result.as_dict()}
        label = f"channel {channel.formatted_number}"
        if not result.bytes_read:
            return Check("live", "FAIL", f"{label}: NextPVR sent no bytes in {self.probe_seconds:.0f} s", data)
        audio = "+".join(result.audio_codecs) or "no audio"
        rate = f"{result.bitrate / 1e6:.1f} Mbit/s" if result.bitrate else "unknown bitrate"
        gop = f"keyframe every {result.keyframe_interval:.1f} s" if result.keyframe_interval else \
            f"{result.keyframes} keyframe(s)"
        facts = f"{label}: {result.video_codec or 'no video'} + {audio}, {rate}, {gop}"
        if result.remux_possible:
            status = "OK" if result.remux_note == "remux works" else "WARN"
            return Check("live", status, f"{facts}; remux possible ({result.remux_note})", data)
        return Check("live", "WARN", f"{facts}; remux not possible: {result.remux_note}", data)

    async def transcode_check(self) -> Check:
        channel = self._probe_channel()
        if channel is None:
            return Check("transcode", "FAIL", "no TV channel to transcode")
        profile = self.config.hls.profile
        session = await self.client.pool.lease()
        try:
            await self.client.transcode_initiate(session, "channel", channel.id, profile)
            started = time.monotonic()
            deadline = started + self.config.hls.start_timeout
            while not (status := await self.client.transcode_status(session, "channel")).ready:
                if status.failed or time.monotonic() > deadline:
                    return Check("transcode", "FAIL", f"NextPVR's transcoder did not get ready "
                                 f"(profile {profile}, {status.percentage}%)")
                await asyncio.sleep(self.config.hls.status_poll_interval)
            ready_after = time.monotonic() - started
            sid = await session.sid()
            async with await self.client.open_stream(self.client.transcode_playlist_url(sid, "channel")) as body:
                text = (await body.read(self.config.hls.playlist_max_bytes)).decode("utf-8", "replace")
        finally:
            await self.client.transcode_stop(session, "channel")
            await self.client.pool.release(session, discard=True)
        uris = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        shape = mask_uri(uris[0], sid, self.config.nextpvr.base_url) if uris else None
        data = {"profile": profile, "ready_seconds": round(ready_after, 2), "segments": len(uris),
                "segment_uri_shape": shape}
        if not text.startswith("#EXTM3U") or not uris:
            return Check("transcode", "FAIL", "the transcoder's playlist is not a usable HLS playlist", data)
        return Check("transcode", "OK", f"profile {profile} ready after {ready_after:.1f} s, {len(uris)} segments, "
                     f"segment URIs like {shape}; stopped", data)


def mask_uri(uri: str, sid: str, base_url: str) -> str:
    """The shape of a segment URI with the session id and NextPVR's address replaced."""
    masked = uri.replace(sid, "<sid>") if sid else uri
    origin = str(URL(base_url).origin())
    masked = masked.replace(origin, "<nextpvr>")
    # any other absolute origin is NextPVR's too (a host name it prefers over the configured one)
    masked = re.sub(r"^[a-z][a-z0-9+.-]*://[^/]+", "<nextpvr>", masked, flags=re.IGNORECASE)
    return re.sub(r"(?i)(sid=)[^&]+", r"\1<sid>", masked)


def new_http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16), requote_redirect_url=False)
