"""Everything that talks to NextPVR: sessions, typed API calls, transcodes and streams."""

from __future__ import annotations

from proxy.nextpvr.client import (
    OUTCOMES,
    ClientObserver,
    NextPVRClient,
    RecordingFilter,
    TranscodeKind,
)
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
from proxy.nextpvr.session import NextPVRSession, SessionPool
from proxy.nextpvr.streams import UpstreamStream, iter_body, read_limited

__all__ = [
    "OUTCOMES",
    "Channel",
    "ChannelGroup",
    "ClientObserver",
    "Device",
    "DeviceActivity",
    "Listing",
    "NextPVRClient",
    "NextPVRSession",
    "Recording",
    "RecordingFilter",
    "RecordingStatus",
    "SessionPool",
    "Settings",
    "SystemStatus",
    "TranscodeKind",
    "TranscodeStatus",
    "UpstreamStream",
    "iter_body",
    "read_limited",
]
