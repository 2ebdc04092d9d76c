"""Every piece of shared application state, behind a typed ``web.AppKey``."""

from __future__ import annotations

from aiohttp import web

from proxy.config import Config
from proxy.metrics import Metrics

__all__ = ["CONFIG_KEY", "METRICS_KEY"]

CONFIG_KEY = web.AppKey("config", Config)
METRICS_KEY = web.AppKey("metrics", Metrics)
