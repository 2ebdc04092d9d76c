"""Shared fixtures: the project's NextPVR emulator and the proxy in front of it, on loopback.

``emulator_factory(**config)`` starts an :class:`Emulator` on a free port;
``proxy_factory(emulator, **overrides)`` builds the proxy app against it with a fresh
Prometheus registry and returns an aiohttp ``TestClient``. Overrides are dotted config
keys: ``proxy_factory(emu, **{"hls.idle_timeout": 2})``.

Every test gets the PIN ``TEST_PIN`` (long enough to be recognisable in a log grep) and
every log record is checked afterwards for the PIN and every sid the emulators issued.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import Config, parse_config
from proxy.emulator import Emulator, EmulatorConfig
from proxy.keys import CONFIG_KEY
from proxy.media.library import MediaLibrary
from tests.emulator_client import MakeEmu, emu_client_factory

TEST_PIN = "918273"

EmulatorFactory = Callable[..., Awaitable[Emulator]]
ProxyFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

_ALL_SIDS: set[str] = set()
#: responses that carried the PIN or a sid (checked after every test)
_LEAKY_RESPONSES: list[str] = []


def _response_secret_check(emu: Emulator) -> Any:
    """A middleware for test apps: no response body or header may hold the PIN or a sid."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        visible = (bytes(body) if isinstance(body, bytes | bytearray) else b"") + \
            repr(dict(response.headers)).encode()
        if TEST_PIN.encode() in visible or any(sid.encode() in visible for sid in emu.state.issued_sids):
            _LEAKY_RESPONSES.append(f"{request.method} {request.path}")
        return response

    return check


def proxy_config(base_url: str, **overrides: Any) -> Config:
    """A config for tests: the minimal file plus dotted-key overrides (``nextpvr.pin`` too)."""
    raw: dict[str, Any] = {
        "nextpvr": {"base_url": base_url, "pin": TEST_PIN},
        "server": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "DEBUG"},
        # the transcode path's tests predate hls.mode (default auto); remux tests set it themselves
        "hls": {"mode": "transcode"},
    }
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_config(yaml.safe_dump(raw), source="<test>", env={})


@pytest.fixture
async def emulator_factory() -> AsyncIterator[EmulatorFactory]:
    started: list[Emulator] = []

    async def start(**config: Any) -> Emulator:
        config.setdefault("pin", TEST_PIN)
        emu = Emulator(EmulatorConfig(**config))
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in reversed(started):
        _ALL_SIDS.update(emu.state.issued_sids)
        await emu.stop()


@pytest.fixture(scope="session")
def media_library() -> MediaLibrary:
    """The committed samples, loaded once (the emulator tests build many apps on them)."""
    return MediaLibrary.load()


@pytest.fixture
def make_emu_client(aiohttp_client: Any, media_library: MediaLibrary) -> MakeEmu:
    """In-process emulator apps behind a TestClient, for the emulator's own protocol tests."""
    return emu_client_factory(aiohttp_client, media_library)


@pytest.fixture
async def emulator(emulator_factory: EmulatorFactory) -> Emulator:
    return await emulator_factory()


@pytest.fixture
async def proxy_factory() -> AsyncIterator[ProxyFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def build(emu: Emulator | str, *, pin: str = TEST_PIN, **overrides: Any) -> TestClient[Any, Any]:
        base = emu if isinstance(emu, str) else emu.url
        app = create_app(proxy_config(base, **{"nextpvr.pin": pin, **overrides}), registry=CollectorRegistry())
        if not isinstance(emu, str):
            app.middlewares.append(_response_secret_check(emu))
        client: TestClient[Any, Any] = TestClient(TestServer(app, access_log=None))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def proxy(emulator: Emulator, proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await proxy_factory(emulator)


def uris(text: str | bytes) -> list[str]:
    """The URI lines of a playlist (every line that is neither blank nor a tag or comment)."""
    if isinstance(text, bytes):
        text = text.decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def app_of(client: TestClient[Any, Any]) -> web.Application:
    """The proxy application behind a test client (typed: its AppKeys give typed services)."""
    server = client.server
    assert isinstance(server, TestServer), "a proxy test client runs a TestServer"
    return server.app


def app_config(client: TestClient[Any, Any]) -> Config:
    return app_of(client)[CONFIG_KEY]


class _SecretWatch(logging.Handler):
    """Keeps every formatted log line of a test, to check none carries a secret."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot even be formatted is not our concern here
            self.lines.append(str(record.msg))


@pytest.fixture(autouse=True)
def no_secrets_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: no log line (formatted with its traceback) holds the PIN or an issued sid."""
    watch = _SecretWatch()
    watch.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(watch)
        root.setLevel(old_level)
    leaky, _LEAKY_RESPONSES[:] = list(_LEAKY_RESPONSES), []
    if request.node.get_closest_marker("leaks_secrets_on_purpose"):
        return
    assert not leaky, f"responses carried the PIN or a sid: {leaky}"
    text = "\n".join(watch.lines)
    assert TEST_PIN not in text, "the PIN reached a log line"
    leaked = [sid for sid in _ALL_SIDS if sid in text]
    assert not leaked, f"{len(leaked)} NextPVR session id(s) reached a log line"
