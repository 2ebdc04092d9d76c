"""Settings of the emulated NextPVR.

Every behaviour that nextpvr-api.md marks as inferred or unknown is a field here, so tests can
exercise the proxy against each plausible variant of the real server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["EmulatorConfig", "SegmentUriStyle"]

SegmentUriStyle = Literal["relative", "query", "absolute"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    pin: str = "0000"
    tuners: int = 4
    #: how transcode playlists name their segments; the real shape is unknown
    segment_uri_style: SegmentUriStyle = "relative"
    segment_seconds: int = 2
    #: segments in the live sliding window of a channel transcode playlist
    playlist_window: int = 6
    #: segments already listed when the transcode status reaches 100
    initial_segments: int = 3
    #: status percentage climbs from 0 to 100 over this time
    transcode_ready_seconds: float = 1.0
    #: a transcode with no playlist, segment or lease request for this long is dropped
    transcode_expiry: float = 15.0
    #: a /live handle whose reader consumed nothing (and that no lease renewed) for this long is dropped
    live_expiry: float = 15.0
    #: sliding idle expiry of a session id
    session_expiry: float = 3600.0
    #: same-channel /live requests share one tuner
    share_tuners: bool = False
    code8_message: str = "Not logged in"
    profiles: tuple[str, ...] = ("1080p", "720p", "576p", "504p", "480p", "360p", "240p", "144p")
    #: /live, /stream and recordings need a valid sid (in sid= or as the suffix of client=)
    require_sid_for_streams: bool = True
    #: pace /live at real time (False: as fast as the reader takes it)
    realtime: bool = True

    # -- answers the doc marks as inferred -------------------------------------------------------
    unknown_method_code: int = 3
    unknown_method_message: str = "Unknown method."
    login_failed_code: int = 1
    login_failed_message: str = "Login Failed"
    #: refuse logins from non-private addresses while the PIN is the default "0000"
    refuse_remote_default_pin: bool = False
    #: refuse every login from a non-private address
    remote_access: bool = True
    #: JSON bodies of list methods also carry "stat":"ok" (real servers seem to leave it out)
    json_list_stat: bool = False
    #: channel.icon answers without a sid (Jellyfin builds icon URLs without one)
    icons_without_sid: bool = False
    #: recording.delete of an unknown id answers ok (as WC did) instead of Invalid Args
    delete_unknown_ok: bool = True
    #: a recording transcode holds a tuner like a channel transcode
    recording_transcode_uses_tuner: bool = True
    #: an in-progress recording holds a tuner (reduces what /live can get)
    recordings_use_tuners: bool = False

    # -- generated data --------------------------------------------------------------------------
    #: length of the completed sample recordings
    recording_seconds: int = 60
    #: scheduled length of the recording that is in progress at start-up
    growing_recording_seconds: int = 1800
    #: how long that recording has already been running at start-up
    growing_recording_elapsed: float = 10.0
    #: media actually captured for one recording, whatever its scheduled length
    recording_media_cap_seconds: int = 300
    #: a timeshift buffer (channel.stream.start) stops growing after this long
    timeshift_max_seconds: int = 3600

    # -- bounds ----------------------------------------------------------------------------------
    max_sessions: int = 1000
    #: per-source bound of the media library's segment cache (when the emulator loads the library)
    segment_cache_bytes: int = 16 * 1024 * 1024
    #: socket send buffer of /live connections, so a reader that stops is noticed
    live_send_buffer: int = 64 * 1024
    write_chunk: int = 64 * 1024

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.tuners < 0:
            problems.append("tuners must be >= 0")
        if self.segment_uri_style not in get_args(SegmentUriStyle):
            problems.append(f"segment_uri_style must be one of {get_args(SegmentUriStyle)}")
        if self.segment_seconds < 1:
            problems.append("segment_seconds must be >= 1")
        if self.playlist_window < 1:
            problems.append("playlist_window must be >= 1")
        if not 1 <= self.initial_segments <= self.playlist_window:
            problems.append("initial_segments must be between 1 and playlist_window")
        for name in ("transcode_ready_seconds", "growing_recording_elapsed"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        for name in ("transcode_expiry", "live_expiry", "session_expiry"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        for name in (
            "recording_seconds",
            "growing_recording_seconds",
            "recording_media_cap_seconds",
            "timeshift_max_seconds",
            "max_sessions",
            "segment_cache_bytes",
            "live_send_buffer",
            "write_chunk",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if not self.profiles:
            problems.append("profiles must not be empty")
        if problems:
            raise ValueError("invalid EmulatorConfig: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EmulatorConfig:
        """Build from plain data (YAML, JSON); unknown keys are an error, lists become tuples."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown emulator settings: {', '.join(unknown)}")
        cleaned: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**cleaned)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "pin"}
