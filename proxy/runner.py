"""Run the proxy (and, for the demo, the emulator) until SIGTERM/SIGINT.

Shutdown order, chosen so NextPVR gets its tuners back and in-flight segments finish:

1. stop accepting connections (the listening sockets close);
2. ``on_shutdown``: live TS viewers are ended (an endless stream cannot "finish") and
   no new transcode may start;
3. in-flight responses (segments, playlists) get ``server.shutdown_grace`` seconds;
4. cleanup: every transcode is stopped at NextPVR, every TS connection closed, the
   NextPVR sessions logged out, the HTTP client closed. Exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.config import Config
from proxy.keys import CONFIG_KEY
from proxy.web.connections import ConnectionGuard, GuardedSite

__all__ = ["new_event_loop", "run_forever", "serve"]

log = logging.getLogger("proxy")
#: keep-alive idle timeout of an app without the proxy's config (aiohttp's own default is an hour)
_KEEPALIVE = 75.0


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """An event loop per ``server.event_loop``: ``auto`` takes uvloop when it is installed."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def start_site(app: web.Application, host: str, port: int, *, shutdown_timeout: float,
                     client_max_size: int | None = None) -> tuple[web.AppRunner, int]:
    """Start ``app`` on host:port; returns the runner and the bound port (port 0 picks one).

    The proxy's own app (it carries its config) gets the connection limits of ``server.``:
    the header deadline and connection bound (``proxy/web/connections.py``) and aiohttp's
    keep-alive idle timeout."""
    config = app.get(CONFIG_KEY)
    keepalive = config.server.keepalive_timeout if config is not None else _KEEPALIVE
    runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True,
                           shutdown_timeout=shutdown_timeout, access_log=None, keepalive_timeout=keepalive)
    await runner.setup()
    site: web.TCPSite
    if config is not None:
        guard = ConnectionGuard(header_timeout=config.server.header_timeout,
                                max_connections=config.server.connection_limit)
        site = GuardedSite(runner, host, port, guard, reuse_address=True)
    else:
        site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = port
    for address in runner.addresses:
        # (host, port) for IPv4, (host, port, flowinfo, scope) for IPv6
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return runner, bound


async def run_forever(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` where ``stop`` is set on SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def serve(config: Config) -> None:
    """Serve the proxy until a signal arrives, then shut down gracefully."""
    from proxy.app import create_app
    from proxy.security import warn_if_exposed

    async def main(stop: asyncio.Event) -> None:
        warn_if_exposed(config)
        app = create_app(config)
        runner, port = await start_site(app, config.server.host, config.server.port,
                                        shutdown_timeout=config.server.shutdown_grace)
        log.info("nextpvr-hls-proxy listening on http://%s:%d", config.server.host, port)
        try:
            await stop.wait()
            log.info("shutting down (grace %.0fs)", config.server.shutdown_grace)
        finally:
            await runner.cleanup()
        log.info("stopped")

    await run_forever(main)
