"""``/_emulator/...``: the test hooks over HTTP, for an emulator running in another process.

- ``GET  /_emulator/state``            counters, live values, sids, transcode timings (JSON)
- ``POST /_emulator/restart``          wipe sessions and transcodes, abort every media connection
- ``POST /_emulator/expire-sessions``  every sid becomes unknown (code 8)
- ``GET  /_emulator/faults``           pending faults
- ``POST /_emulator/faults``           arm faults, body as in :meth:`Faults.apply`, e.g.
  ``{"http_500": {"kind": "segment", "count": 2}, "reset_segments": 1,
  "slow_segments": {"count": 1, "delay": 0.5, "bytes_per_second": 100000},
  "garbage_playlists": 1, "leaky_playlists": 2, "stall_live": 3.0, "kill_transcodes": 1,
  "slow_api": {"seconds": 3.0, "count": 1}, "clear": true}``
- ``DELETE /_emulator/faults``         disarm everything
"""

from __future__ import annotations

from aiohttp import web

from proxy.emulator.state import STATE_KEY

__all__ = ["add_control_routes"]


async def get_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].snapshot())


async def restart(request: web.Request) -> web.Response:
    request.app[STATE_KEY].restart()
    return web.json_response({"ok": True})


async def expire_sessions(request: web.Request) -> web.Response:
    return web.json_response({"expired": request.app[STATE_KEY].expire_sessions()})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].faults.snapshot())


async def post_faults(request: web.Request) -> web.Response:
    faults = request.app[STATE_KEY].faults
    try:
        spec = await request.json()
        if not isinstance(spec, dict):
            raise TypeError("the body must be a JSON object")
        faults.apply(spec)
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"error": str(exc) or type(exc).__name__}, status=400)
    return web.json_response(faults.snapshot())


async def clear_faults(request: web.Request) -> web.Response:
    faults = request.app[STATE_KEY].faults
    faults.clear()
    return web.json_response(faults.snapshot())


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/state", get_state)
    app.router.add_post("/_emulator/restart", restart)
    app.router.add_post("/_emulator/expire-sessions", expire_sessions)
    app.router.add_get("/_emulator/faults", get_faults)
    app.router.add_post("/_emulator/faults", post_faults)
    app.router.add_delete("/_emulator/faults", clear_faults)
