"""Shared application state, behind typed ``web.AppKey``s.

Every key whose value is a service of the proxy's own packages is here. Three keys name a
service defined by the web module that serves it, and live there to keep ``keys.py`` free of
``web/*`` imports: ``health.READINESS_KEY``, ``hdhr.HDHR_KEY``, ``recordings.RECORDINGS_KEY``.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy.config import Config
from proxy.hls.manager import TranscodeManager
from proxy.hls.segments import SegmentCache
from proxy.hls.tokens import TokenSigner
from proxy.lineup.channels import ChannelDirectory
from proxy.lineup.groups import ChannelGroups
from proxy.lineup.guide import GuideCache
from proxy.lineup.icons import IconCache
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient
from proxy.packager.manager import RemuxManager
from proxy.ts.fanout import LiveTSManager

__all__ = [
    "CHANNELS_KEY",
    "CLIENT_KEY",
    "CONFIG_KEY",
    "GROUPS_KEY",
    "GUIDE_KEY",
    "HTTP_KEY",
    "ICONS_KEY",
    "METRICS_KEY",
    "REMUX_KEY",
    "SEGMENTS_KEY",
    "SIGNER_KEY",
    "TRACE_KEY",
    "TRANSCODES_KEY",
    "TS_KEY",
]

CONFIG_KEY = web.AppKey("config", Config)
METRICS_KEY = web.AppKey("metrics", Metrics)
HTTP_KEY = web.AppKey("http", aiohttp.ClientSession)
CLIENT_KEY = web.AppKey("nextpvr", NextPVRClient)
SIGNER_KEY = web.AppKey("signer", TokenSigner)
SEGMENTS_KEY = web.AppKey("segments", SegmentCache)
TRANSCODES_KEY = web.AppKey("transcodes", TranscodeManager)
TS_KEY = web.AppKey("live_ts", LiveTSManager)
REMUX_KEY = web.AppKey("remux", RemuxManager)
CHANNELS_KEY = web.AppKey("channels", ChannelDirectory)
GUIDE_KEY = web.AppKey("guide", GuideCache)
ICONS_KEY = web.AppKey("icons", IconCache)
GROUPS_KEY = web.AppKey("channel_groups", ChannelGroups)
#: observers of every request the proxy makes to NextPVR (create_app's trace_configs)
TRACE_KEY = web.AppKey("trace_configs", list[aiohttp.TraceConfig])
