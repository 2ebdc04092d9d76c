"""The emulator as an aiohttp application, and :class:`Emulator`, which runs it on a port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType

from aiohttp import web

from proxy.emulator.api import service
from proxy.emulator.config import EmulatorConfig
from proxy.emulator.control import add_control_routes
from proxy.emulator.feeds import Feeds
from proxy.emulator.state import STATE_KEY, EmulatorState
from proxy.emulator.streams import live, stream_file, transcode_segment
from proxy.media.library import MediaLibrary

__all__ = ["Emulator", "create_emulator_app"]

log = logging.getLogger("proxy.emulator")

#: seconds the runner waits for handlers after every media connection was aborted
SHUTDOWN_TIMEOUT = 2.0


def create_emulator_app(
    config: EmulatorConfig = EmulatorConfig(),  # noqa: B008 - frozen, so sharing the default is safe
    media: MediaLibrary | None = None,
) -> web.Application:
    """A NextPVR look-alike; the media library is loaded on first use when not given."""
    app = web.Application()
    state = EmulatorState(config, Feeds(config.segment_seconds, config.segment_cache_bytes, media))
    app[STATE_KEY] = state
    for path in ("/service", "/services/service", "/services"):
        app.router.add_get(path, service)
        app.router.add_post(path, service)
    app.router.add_get("/live", live)
    app.router.add_get("/stream", stream_file)
    for prefix in ("", "/services"):
        app.router.add_get(prefix + r"/transcode/{transcode:\d+}/{n:\d+}.ts", transcode_segment)
    add_control_routes(app)
    app.cleanup_ctx.append(_housekeeping)
    app.on_shutdown.append(_abort_streams)
    return app


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE_KEY]

    async def sweep() -> None:
        while True:
            state.sweep()
            await asyncio.sleep(state.sweep_interval())

    task = asyncio.create_task(sweep(), name="nextpvr-emulator-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _abort_streams(app: web.Application) -> None:
    """Endless /live bodies would otherwise hold the shutdown for the runner's whole timeout."""
    app[STATE_KEY].abort_streams()


class Emulator:
    """``async with Emulator(EmulatorConfig(tuners=2)) as emu: ... emu.url ...``"""

    def __init__(
        self,
        config: EmulatorConfig = EmulatorConfig(),  # noqa: B008 - frozen, so sharing the default is safe
        media: MediaLibrary | None = None,
    ) -> None:
        self.config = config
        self.app = create_emulator_app(config, media)
        self.state: EmulatorState = self.app[STATE_KEY]
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        # no access log: request lines carry session ids, which no log may contain
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        log.info("NextPVR emulator listening on %s (%d tuners)", self.url, self.config.tuners)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
