"""NextPVRClient: the typed NextPVR API: channels and guide, recordings, settings, transcode control.

Each method is one API call through :class:`~proxy.nextpvr.transport.NextPVRTransport` (sid,
re-login, timeouts, error translation) parsed into ``models`` by ``parse``; a refused transcode
start that says "no tuner" becomes :class:`NoTunerAvailable`.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from yarl import URL

from proxy.errors import (
    BadRequest,
    NextPVRError,
    NextPVRFailed,
    NextPVRUnparseable,
    NoTunerAvailable,
    RecordingNotFound,
    SessionExpired,
    TranscodeFailed,
)
from proxy.nextpvr.envelope import is_session_error, parse_envelope
from proxy.nextpvr.models import (
    Channel,
    ChannelGroup,
    Listing,
    Recording,
    Settings,
    SystemStatus,
    TranscodeStatus,
)
from proxy.nextpvr.parse import (
    parse_channel_groups,
    parse_channels,
    parse_listings,
    parse_recordings,
    parse_settings,
    parse_system_status,
    parse_transcode_status,
)
from proxy.nextpvr.session import NextPVRSession
from proxy.nextpvr.streams import says_no_tuner
from proxy.nextpvr.transport import (
    OUTCOMES,
    ClientObserver,
    NextPVRTransport,
    ParamValue,
    _HTTPStatusError,
    _outcome,
    _Raw,
)

__all__ = [
    "OUTCOMES",
    "ClientObserver",
    "NextPVRClient",
    "RecordingFilter",
    "TranscodeKind",
]

log = logging.getLogger("proxy.nextpvr")

TranscodeKind = Literal["channel", "recording"]
RecordingFilter = Literal["all", "ready", "pending", "recording", "conflict", "failed", "recent"]
_MAX_ICON_BYTES = 4 * 1024 * 1024
_IMAGE_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
)



class NextPVRClient(NextPVRTransport):
    """Typed access to one NextPVR server over the app's shared ``ClientSession``."""

    def __repr__(self) -> str:
        return f"<NextPVRClient {URL(self._base).origin()}>"

    async def channel_list(self, group: str | None = None, *, extras: bool = False) -> tuple[Channel, ...]:
        """Channels, optionally of one group. ``extras`` asks for each channel's group
        memberships (NextPVR sends them only then; in XML at least)."""
        params: dict[str, ParamValue] = {"group_id": group} if group else {}
        if extras:
            params["extras"] = True
        return parse_channels(await self.call("channel.list", params))

    async def channel_groups(self) -> tuple[ChannelGroup, ...]:
        return parse_channel_groups(await self.call("channel.groups"))

    async def channel_listings(
        self, channel_id: int, start: float | None = None, end: float | None = None
    ) -> tuple[Listing, ...]:
        """EPG events of one channel; ``start``/``end`` are epoch seconds."""
        params: dict[str, ParamValue] = {"channel_id": channel_id}
        if start is not None:
            params["start"] = int(start)
        if end is not None:
            params["end"] = int(end)
        return parse_listings(await self.call("channel.listings", params), channel_id)

    async def channel_icon(self, channel_id: int) -> tuple[bytes, str] | None:
        """``(image bytes, content type)``, or None when NextPVR has no icon for the channel."""
        method = "channel.icon"
        sid = await self.session.sid()
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                raw = await self._fetch(
                    self._service_url(method, {"channel_id": str(channel_id)}, sid, None), method,
                    _MAX_ICON_BYTES)
            except NextPVRError as exc:
                self._observe(method, _outcome(exc), started)
                raise
            if raw.status == 404:
                self._observe(method, "ok", started)
                return None
            if not 200 <= raw.status < 300:
                self._observe(method, "failed", started)
                raise _HTTPStatusError(method, raw.status)
            image_type = _image_type(raw)
            if image_type is not None:
                self._observe(method, "ok", started)
                return raw.body, image_type
            try:
                env = parse_envelope(raw.body, method)
            except NextPVRUnparseable:
                self._observe(method, "unparseable", started)
                raise
            if is_session_error(env) and attempt == 1:
                self._observe(method, "code8", started)
                sid = await self.session.relogin(sid)
                continue
            self._observe(method, "ok" if env.ok else "failed", started)
            if is_session_error(env):
                raise SessionExpired(f"NextPVR refused a fresh session for {method} (code 8 twice)")
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    async def recording_list(
        self, filter: RecordingFilter = "all", recording_id: int | None = None
    ) -> tuple[Recording, ...]:
        params: dict[str, ParamValue] = {"filter": filter}
        if recording_id is not None:
            params["recording_id"] = recording_id
        return parse_recordings(await self.call("recording.list", params))

    async def recording_get(self, recording_id: int) -> Recording:
        """One recording by id; RecordingNotFound when NextPVR lists none."""
        for rec in await self.recording_list("all", recording_id):
            if rec.id == recording_id:
                return rec
        raise RecordingNotFound(f"NextPVR has no recording {recording_id}")

    async def recording_save(
        self,
        *,
        event_id: int | None = None,
        channel_id: int | None = None,
        start: float | None = None,
        duration: int | None = None,
        name: str | None = None,
        pre_padding: int | None = None,
        post_padding: int | None = None,
        recording_id: int | None = None,
    ) -> None:
        """Schedule (or, with ``recording_id``, update) a one-off recording.

        Either ``event_id`` (an EPG listing id) or ``channel_id`` + ``start`` (epoch s) +
        ``duration`` (s). Paddings are minutes. NextPVR does not report the new id.
        """
        params: dict[str, ParamValue] = {}
        if event_id is not None:
            params["event_id"] = event_id
        elif channel_id is not None and start is not None and duration is not None:
            params.update(channel=channel_id, time_t=int(start), duration=int(duration))
            if name:
                params["name"] = name
        else:
            raise BadRequest("give either event_id or channel_id, start and duration", field="event_id")
        for key, value in (("pre_padding", pre_padding), ("post_padding", post_padding),
                           ("recording_id", recording_id)):
            if value is not None:
                params[key] = value
        await self.call("recording.save", params)

    async def recording_delete(self, recording_id: int) -> None:
        await self.call("recording.delete", {"recording_id": recording_id})

    async def setting_list(self) -> Settings:
        return parse_settings(await self.call("setting.list"))

    async def system_status(self) -> SystemStatus:
        # only the XML shape of system.status is known, so always ask for XML
        return parse_system_status(await self.call("system.status", fmt="xml"))

    # -- transcodes (one per session) --------------------------------------------
    async def transcode_initiate(
        self, session: NextPVRSession, kind: TranscodeKind, target_id: int, profile: str
    ) -> None:
        """Start (or replace: ``force=true``) the transcode of ``session``."""
        params: dict[str, ParamValue] = {"force": True, f"{kind}_id": target_id, "profile": profile}
        try:
            await self.call(f"{kind}.transcode.initiate", params, session=session)
        except NextPVRFailed as exc:
            if says_no_tuner(exc.message):
                raise NoTunerAvailable(retry_after=self._config.no_tuner_retry_after) from exc
            raise TranscodeFailed(
                f"NextPVR refused to start a {kind} transcode with profile {profile!r} ({exc.message})",
                profile=profile) from exc

    async def transcode_status(self, session: NextPVRSession, kind: TranscodeKind) -> TranscodeStatus:
        try:
            env = await self.call(f"{kind}.transcode.status", session=session)
        except NextPVRFailed as exc:
            raise TranscodeFailed(f"NextPVR's {kind} transcoder stopped ({exc.message})") from exc
        return parse_transcode_status(env)

    def transcode_playlist_url(self, sid: str, kind: TranscodeKind) -> URL:
        return self._service_url(f"{kind}.transcode.m3u8", {}, sid, None)

    async def transcode_lease(self, session: NextPVRSession, kind: TranscodeKind) -> bool:
        """Renew the transcode; False when NextPVR says there is none (it 404s or refuses)."""
        try:
            await self.call(f"{kind}.transcode.lease", session=session, relogin=False)
        except (NextPVRFailed, SessionExpired) as exc:
            log.debug("NextPVR has no %s transcode for session #%d to lease: %s",
                      kind, session.number, exc.message)
            return False
        return True

    async def transcode_stop(self, session: NextPVRSession, kind: TranscodeKind) -> bool:
        """Stop the transcode; True when NextPVR confirmed. Never raises (teardown path)."""
        if not session.logged_in:
            return False
        try:
            await self.call(f"{kind}.transcode.stop", session=session, relogin=False)
        except NextPVRError as exc:
            log.debug("stopping the %s transcode of session #%d: %s", kind, session.number, exc.message)
            return False
        return True


def _image_type(raw: _Raw) -> str | None:
    declared = raw.content_type.split(";")[0].strip().lower()
    for magic, mime in _IMAGE_MAGIC:
        if raw.body.startswith(magic):
            return declared if declared.startswith("image/") else mime
    if raw.body[:4] == b"RIFF" and raw.body[8:12] == b"WEBP":
        return "image/webp"
    if declared.startswith("image/") and raw.body:
        return declared
    return None
