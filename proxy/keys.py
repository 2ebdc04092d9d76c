"""Every piece of shared application state, behind a typed ``web.AppKey``."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy.config import Config
from proxy.hls.manager import TranscodeManager
from proxy.hls.segments import SegmentCache
from proxy.hls.tokens import TokenSigner
from proxy.lineup.channels import ChannelDirectory
from proxy.metrics import Metrics
from proxy.nextpvr.client import NextPVRClient
from proxy.packager.manager import RemuxManager
from proxy.ts.fanout import LiveTSManager

__all__ = [
    "CHANNELS_KEY",
    "CLIENT_KEY",
    "CONFIG_KEY",
    "HTTP_KEY",
    "METRICS_KEY",
    "REMUX_KEY",
    "SEGMENTS_KEY",
    "SIGNER_KEY",
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
