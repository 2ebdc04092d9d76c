"""``/healthz`` (the process serves), ``/readyz`` (it can do its job) and ``/metrics``.

Readiness means: NextPVR answers and accepts the PIN, and (when the guide is built by
this process) the first guide build finished. The NextPVR check is cached for
``server.readiness_cache`` seconds, so probes every second cost NextPVR one call per
window, and concurrent probes share one check. The body says which check fails, never
with a secret in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler

from proxy.errors import LoginRefused, NextPVRError
from proxy.keys import METRICS_KEY
from proxy.nextpvr.client import NextPVRClient
from proxy.web.routes import Access, add_route

__all__ = ["READINESS_KEY", "Readiness", "setup"]

#: extra readiness checks other modules register: name -> coroutine giving (ok, detail)
ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


class Readiness:
    def __init__(self, client: NextPVRClient, ttl: float) -> None:
        self._client = client
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._nextpvr: tuple[bool, str] = (False, "not checked yet")
        self.extra: dict[str, ReadinessCheck] = {}

    async def _check_nextpvr(self) -> tuple[bool, str]:
        async with self._lock:
            now = time.monotonic()
            if self._checked_at is not None and now - self._checked_at < self._ttl:
                return self._nextpvr
            try:
                await self._client.setting_list()
            except LoginRefused:
                result = (False, "NextPVR rejected the PIN (check nextpvr.pin)")
            except NextPVRError as exc:
                result = (False, f"NextPVR is not usable: {exc.message}")
            else:
                result = (True, "ok")
            self._nextpvr = result
            self._checked_at = time.monotonic()
            return result

    async def check(self) -> tuple[bool, dict[str, str]]:
        results = {"nextpvr": await self._check_nextpvr()}
        for name, check in self.extra.items():
            results[name] = await check()
        ready = all(ok for ok, _ in results.values())
        return ready, {name: detail for name, (_, detail) in results.items()}


READINESS_KEY = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await request.app[READINESS_KEY].check()
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503,
                             headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    # probes and Prometheus: no key (they expose no secret), and answered even when the client limit is hit
    add_route(app, hdrs.METH_GET, "/healthz", healthz, access=Access.PUBLIC, limited=False)
    add_route(app, hdrs.METH_GET, "/readyz", readyz, access=Access.PUBLIC, limited=False)
    add_route(app, hdrs.METH_GET, "/metrics", make_aiohttp_handler(app[METRICS_KEY].registry),
              access=Access.PUBLIC, limited=False)
