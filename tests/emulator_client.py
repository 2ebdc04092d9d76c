"""One in-process client for the emulator's protocol tests (its API, streams and hooks).

The proxy tests start the emulator on a real socket (``emulator_factory`` in conftest.py);
the emulator's own tests talk to its app through a ``TestClient``, which gives them
``make_url`` and the raw session. Both go through :func:`proxy.emulator.create_emulator_app`.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Middleware

from proxy.emulator import STATE_KEY, EmulatorConfig, EmulatorState, create_emulator_app
from proxy.media.library import MediaLibrary

__all__ = ["DECLARATION", "EMU_PIN", "EmuClient", "MakeEmu", "emu_client_factory", "login_hash"]

EMU_PIN = "4711"
DECLARATION = '<?xml version="1.0" encoding="utf-8" ?>\n'
#: what the emulator tests run with unless a test says otherwise
_DEFAULTS: dict[str, Any] = {"pin": EMU_PIN, "segment_seconds": 1, "transcode_ready_seconds": 0.1}


def login_hash(pin: str, salt: str) -> str:
    inner = hashlib.md5(pin.encode()).hexdigest()
    return hashlib.md5(f":{inner}:{salt}".encode()).hexdigest()


class EmuClient:
    """A test client for one emulator app, with the login done the way NextPVR clients do it."""

    def __init__(self, client: TestClient[Any, Any], state: EmulatorState, pin: str = EMU_PIN) -> None:
        self.client = client
        self.state = state
        self.pin = pin
        self.sid = ""

    async def raw(
        self, method: str, path: str = "/service", headers: dict[str, str] | None = None, **params: Any
    ) -> tuple[int, str, str]:
        query = {"method": method, **{k: str(v) for k, v in params.items()}}
        async with self.client.get(path, params=query, headers=headers) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.text(errors="replace")

    async def xml(self, method: str, **params: Any) -> ET.Element:
        status, ctype, body = await self.raw(method, sid=self.sid, **params)
        assert status == 200, body
        assert ctype.startswith("text/xml")
        assert body.startswith(DECLARATION)
        return ET.fromstring(body)

    async def json(self, method: str, **params: Any) -> Any:
        status, ctype, body = await self.raw(method, sid=self.sid, format="json", **params)
        assert status == 200, body
        assert ctype.startswith("application/json")
        return json.loads(body)

    async def api(self, method: str, **params: Any) -> Any:
        """A JSON API call with the session id (status 200 asserted, content type not)."""
        query = {"method": method, "sid": self.sid, "format": "json", **{k: str(v) for k, v in params.items()}}
        async with self.client.get("/service", params=query) as resp:
            assert resp.status == 200
            return json.loads(await resp.text())

    async def login(self, pin: str | None = None, *, upper: bool = False) -> str:
        root = ET.fromstring((await self.raw("session.initiate", ver="1.0", device="pytest"))[2])
        sid, salt = root.findtext("sid", ""), root.findtext("salt", "")
        digest = login_hash(self.pin if pin is None else pin, salt)
        root = ET.fromstring(
            (await self.raw("session.login", sid=sid, md5=digest.upper() if upper else digest))[2]
        )
        assert root.get("stat") == "ok", ET.tostring(root)
        self.sid = sid
        return sid

    async def open_live(self, **params: Any) -> aiohttp.ClientResponse:
        query = {"sid": self.sid, **{k: str(v) for k, v in params.items()}}
        return await self.client.get("/live", params=query)

    async def recording(
        self, rec_id: int, headers: dict[str, str] | None = None, method: str = "GET", **params: Any
    ) -> aiohttp.ClientResponse:
        query = {"recording": str(rec_id), "client": f"XBMC-{self.sid}", **{k: str(v) for k, v in params.items()}}
        return await self.client.request(method, "/live", params=query, headers=headers)

    async def recording_id(self, status: str) -> int:
        return int((await self.api("recording.list", filter=status))["recordings"][0]["id"])


MakeEmu = Callable[..., Awaitable[EmuClient]]


def emu_client_factory(aiohttp_client: Any, library: MediaLibrary) -> MakeEmu:
    """``make(login=False, middlewares=(), **EmulatorConfig fields)`` -> a started :class:`EmuClient`."""

    async def make(*, login: bool = False, middlewares: Sequence[Middleware] = (), **overrides: Any) -> EmuClient:
        settings = {**_DEFAULTS, **overrides}
        app = create_emulator_app(EmulatorConfig(**settings), library)
        app.middlewares.extend(middlewares)
        emu = EmuClient(await aiohttp_client(app), app[STATE_KEY], settings["pin"])
        if login:
            await emu.login()
        return emu

    return make
