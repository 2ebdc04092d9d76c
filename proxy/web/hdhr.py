"""HDHomeRun emulation for Plex, Jellyfin and Emby (only when ``hdhomerun.enabled``).

- ``GET /discover.json``, ``/lineup.json``, ``/lineup_status.json``, ``/device.xml``
- ``POST /lineup.post`` (a channel scan request: there is nothing to scan, so "OK")
- ``GET /auto/v{number}``: the channel's live MPEG-TS, shared with ``/live/{id}.ts``.
  A real HDHomeRun answers "no tuner free" with 503 and ``X-HDHomeRun-Error: 805 All Tuners
  In Use``; so does this route (plus ``Retry-After``). ``transcode=<profile>`` (Jellyfin, for
  an "hdtc" model) is mapped by :data:`proxy.lineup.hdhr.TRANSCODE_PROFILES` (every known profile
  is the original stream; an unknown one is a 400); ``duration=`` is ignored.
- ``HEAD`` on ``/auto/v{number}`` answers at once (:mod:`proxy.web.heads`).
- ``lineup.json`` carries ``VideoCodec``/``AudioCodec`` for channels ``app[CODECS_KEY]`` knows
  (the hook for the per-channel codec memory; by default it knows none).
"""

from __future__ import annotations

import logging
import time

from aiohttp import hdrs, web

from proxy.config import Config
from proxy.errors import NoTunerAvailable, ProxyError
from proxy.keys import CHANNELS_KEY, CONFIG_KEY
from proxy.lineup import hdhr
from proxy.nextpvr.client import NextPVRClient
from proxy.web.live_ts import serve_live_ts
from proxy.web.params import public_base
from proxy.web.routes import Access, add_route, claim

__all__ = ["CODECS_KEY", "HDHR_KEY", "HDHomeRunDevice", "setup"]

log = logging.getLogger("proxy.hdhr")

NO_TUNER_ERROR = "805 All Tuners In Use"
#: how long NextPVR's device count is trusted
_TUNER_COUNT_TTL = 600.0
_TUNER_COUNT_RETRY = 30.0
#: advertised when neither the configuration nor NextPVR says
_FALLBACK_TUNERS = 2


class HDHomeRunDevice:
    """The emulated device: its stable id and its tuner count (cached from NextPVR)."""

    def __init__(self, config: Config, client: NextPVRClient) -> None:
        self.config = config
        self._client = client
        configured = config.hdhomerun.device_id
        self.device_id = configured.upper() if configured else hdhr.derive_device_id(config.nextpvr.base_url)
        if not hdhr.device_id_is_valid(self.device_id):
            log.warning("hdhomerun.device_id %s fails the HDHomeRun check digit; "
                        "tools that validate device ids may ignore it", self.device_id)
        self._tuners: int | None = None
        self._tuners_expire = 0.0

    async def tuner_count(self) -> int:
        fixed = self.config.hdhomerun.tuner_count or self.config.nextpvr.tuner_count
        if fixed:
            return fixed
        now = time.monotonic()
        if now < self._tuners_expire and self._tuners is not None:
            return self._tuners
        try:
            status = await self._client.system_status()
        except ProxyError as exc:
            log.warning("tuner count from NextPVR unavailable (%s); advertising %d", exc.message,
                        self._tuners or _FALLBACK_TUNERS)
            self._tuners_expire = now + _TUNER_COUNT_RETRY
            return self._tuners or _FALLBACK_TUNERS
        self._tuners = max(1, status.tuner_count)
        self._tuners_expire = now + _TUNER_COUNT_TTL
        return self._tuners


HDHR_KEY = web.AppKey("hdhomerun", HDHomeRunDevice)
#: channel id -> (video, audio) codecs seen in its PMT, or None; replace it to feed lineup.json
CODECS_KEY: web.AppKey[hdhr.ChannelCodecs] = web.AppKey("channel_codecs")


async def discover_json(request: web.Request) -> web.Response:
    device = request.app[HDHR_KEY]
    body = hdhr.discover(friendly_name=device.config.hdhomerun.friendly_name, device_id=device.device_id,
                         base=public_base(request), tuner_count=await device.tuner_count())
    return web.json_response(body, headers={hdrs.CACHE_CONTROL: "no-cache"})


async def lineup_json(request: web.Request) -> web.Response:
    channels = await request.app[CHANNELS_KEY].channels()
    return web.json_response(hdhr.lineup(channels, base=public_base(request), codecs=request.app[CODECS_KEY]),
                             headers={hdrs.CACHE_CONTROL: "no-cache"})


async def lineup_status_json(request: web.Request) -> web.Response:
    return web.json_response(hdhr.lineup_status(), headers={hdrs.CACHE_CONTROL: "no-cache"})


async def lineup_post(request: web.Request) -> web.Response:
    # scan=start|abort and favorite=... change nothing here: the line-up is NextPVR's
    return web.Response(text="", content_type="text/plain")


async def device_xml(request: web.Request) -> web.Response:
    device = request.app[HDHR_KEY]
    text = hdhr.device_xml(friendly_name=device.config.hdhomerun.friendly_name, device_id=device.device_id,
                           base=public_base(request))
    return web.Response(text=text, content_type="application/xml", charset="utf-8")


async def auto_tune(request: web.Request) -> web.StreamResponse:
    hdhr.transcode_behaviour(request.query.get("transcode"))  # "original" is all there is
    channel = await request.app[CHANNELS_KEY].by_number(request.match_info["number"])
    try:
        return await serve_live_ts(request, channel.id)
    except NoTunerAvailable as exc:
        exc.headers["X-HDHomeRun-Error"] = NO_TUNER_ERROR
        raise


_DEVICE_PATHS = ("/discover.json", "/lineup.json", "/lineup_status.json", "/lineup.post", "/device.xml")


def setup(app: web.Application) -> None:
    # HDHomeRun clients (Plex, Jellyfin, Emby) cannot send a key: these paths are open. They are
    # claimed even when the device is off, so that their 404s stay 404s (not 401s).
    for path in _DEVICE_PATHS:
        claim(app, path, access=Access.HDHOMERUN)
    claim(app, "/auto/v", prefix=True, access=Access.HDHOMERUN)
    if not app[CONFIG_KEY].hdhomerun.enabled:
        return
    app[CODECS_KEY] = hdhr.no_codecs
    device = Access.HDHOMERUN
    add_route(app, hdrs.METH_GET, "/discover.json", discover_json, access=device)
    add_route(app, hdrs.METH_GET, "/lineup.json", lineup_json, access=device)
    add_route(app, hdrs.METH_GET, "/lineup_status.json", lineup_status_json, access=device)
    add_route(app, hdrs.METH_POST, "/lineup.post", lineup_post, access=device)
    add_route(app, hdrs.METH_GET, "/lineup.post", lineup_post, access=device)
    add_route(app, hdrs.METH_GET, "/device.xml", device_xml, access=device)
    add_route(app, hdrs.METH_GET, r"/auto/v{number:[0-9]{1,6}(?:\.[0-9]{1,6})?}", auto_tune,
              access=device, kind="ts")
