"""Typed values parsed from NextPVR's answers.

Both answer formats (XML and JSON) map onto the same models, with the units already
normalised, so nothing above ``parse.py`` needs to know which one NextPVR sent:

- every point in time is **epoch seconds as a float** (``Listing.start``,
  ``Recording.start``, ``Settings.time_epoch``). XML listings arrive in milliseconds,
  JSON listings in seconds; the parser converts. ``*_utc`` properties give aware UTC
  datetimes for builders that want them (XMLTV, JSON API);
- every length is seconds (``duration_seconds``) except paddings, which stay in
  minutes as NextPVR defines them (``pre_padding``/``post_padding``).

Fields NextPVR sends that are not listed here are ignored by the parser.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Channel",
    "ChannelGroup",
    "Device",
    "DeviceActivity",
    "Listing",
    "Recording",
    "RecordingStatus",
    "Settings",
    "SystemStatus",
    "TranscodeStatus",
]

ChannelKind = Literal["tv", "radio"]


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    id: int
    name: str
    number: int
    minor: int = 0
    #: NextPVR's own display form, ``"4.1"`` or ``"7"``
    formatted_number: str
    kind: ChannelKind = "tv"
    #: whether ``channel.icon`` has an image for it
    has_icon: bool = False
    #: group memberships (only present when NextPVR was asked for extras)
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelGroup:
    #: NextPVR identifies groups by name (``channel.list&group_id=<name>``)
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """One EPG event of ``channel.listings``."""

    #: the EPG event id, which ``recording.save`` takes as ``event_id``
    id: int
    channel_id: int
    title: str
    subtitle: str = ""
    description: str = ""
    #: epoch seconds
    start: float
    #: epoch seconds
    end: float
    genres: tuple[str, ...] = ()
    season: int | None = None
    episode: int | None = None
    year: int | None = None
    #: ``YYYY-MM-DD``; None when absent or not a date
    original_air_date: dt.date | None = None
    firstrun: bool = False
    #: for example ``Live``, ``Premiere``, ``Finale``
    significance: str = ""
    rating: str = ""

    @property
    def start_utc(self) -> dt.datetime:
        return _utc(self.start)

    @property
    def end_utc(self) -> dt.datetime:
        return _utc(self.end)

    @property
    def duration_seconds(self) -> float:
        return max(0.0, self.end - self.start)


class RecordingStatus(enum.StrEnum):
    """NextPVR writes these capitalised in XML and lowercase in JSON; values are lowercase."""

    PENDING = "pending"
    RECORDING = "recording"
    READY = "ready"
    FAILED = "failed"
    CONFLICT = "conflict"
    DELETED = "deleted"
    #: a status this proxy does not know (kept rather than refusing the whole list)
    UNKNOWN = "unknown"

    @classmethod
    def from_text(cls, text: str | None) -> RecordingStatus:
        if not text:
            return cls.UNKNOWN
        try:
            return cls(text.strip().lower())
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    id: int
    name: str
    subtitle: str = ""
    description: str = ""
    #: channel display name
    channel: str = ""
    #: channel OID, 0 when NextPVR knows none
    channel_id: int = 0
    #: scheduled start, epoch seconds (without pre-padding)
    start: float
    #: scheduled length in seconds (without padding)
    duration_seconds: int = 0
    status: RecordingStatus = RecordingStatus.UNKNOWN
    #: full path on the NextPVR host; None while pending
    file: str | None = None
    #: bytes, when NextPVR reports it (API 5.2+)
    size: int | None = None
    #: minutes
    pre_padding: int = 0
    #: minutes
    post_padding: int = 0
    epg_event_id: int | None = None
    recurring: bool = False
    recurring_parent: int | None = None
    #: resume point in seconds
    playback_position: int = 0
    played: bool = False
    #: failure reason, for FAILED
    reason: str = ""
    genres: tuple[str, ...] = ()
    season: int | None = None
    episode: int | None = None
    year: int | None = None
    original_air_date: dt.date | None = None
    significance: str = ""

    @property
    def end(self) -> float:
        """Scheduled end, epoch seconds (without post-padding)."""
        return self.start + self.duration_seconds

    @property
    def start_utc(self) -> dt.datetime:
        return _utc(self.start)

    @property
    def growing(self) -> bool:
        """Still being written: stream it with ``growing=true`` (no Content-Length)."""
        return self.status is RecordingStatus.RECORDING


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    #: ``NextPVRVersion``: major*10000 + minor*100 + build (7.1.3 -> 70103); 0 when absent
    version: int = 0
    #: ``"7.1.3"``; derived from ``version`` when NextPVR sends no readable form
    readable_version: str = ""
    #: minutes
    pre_padding: int = 0
    #: minutes
    post_padding: int = 0
    #: the server's clock when it answered, epoch seconds
    time_epoch: float | None = None
    #: directory names with NextPVR's ``[...]`` brackets removed
    recording_directories: tuple[str, ...] = ()
    live_timeshift: bool | None = None
    slip_seconds: int | None = None
    channels_use_segmenter: bool | None = None
    recordings_use_segmenter: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceActivity:
    #: the XML element name, for example ``LiveTV`` or ``Recording``
    kind: str
    #: what the element says, usually the file being written
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One capture device (tuner) of ``system.status``."""

    oid: int
    identifier: str = ""
    activities: tuple[DeviceActivity, ...] = ()

    @property
    def busy(self) -> bool:
        return bool(self.activities)


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemStatus:
    devices: tuple[Device, ...] = ()

    @property
    def tuner_count(self) -> int:
        """NextPVR reports no tuner count anywhere else; one device is one tuner."""
        return len(self.devices)

    @property
    def busy_count(self) -> int:
        return sum(1 for d in self.devices if d.busy)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscodeStatus:
    percentage: int
    final: bool = False

    @property
    def ready(self) -> bool:
        return self.percentage >= 100

    @property
    def failed(self) -> bool:
        """``final`` below 100 % is how NextPVR says the transcode will not come."""
        return self.final and self.percentage < 100
