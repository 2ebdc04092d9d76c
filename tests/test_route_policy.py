"""Route policy (``proxy/web/routes.py``): every route declares its access level, and requests
that match no route keep answers that do not depend on what is switched on."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.emulator import Emulator
from proxy.web.routes import ROUTE_POLICIES_KEY, Access, Policy, RoutePolicies, add_route
from tests.conftest import ProxyFactory, app_of

KEY = "living-room-key-123"


@pytest.fixture
async def locked(emulator: Emulator, proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await proxy_factory(emulator, **{"auth.api_keys": [KEY]})


async def test_every_route_of_the_app_declares_its_policy(locked: TestClient[Any, Any]) -> None:
    # a route added with app.router directly would silently need a key (and answer text errors)
    app = app_of(locked)
    policies = app[ROUTE_POLICIES_KEY]
    missing = [r.canonical for r in app.router.resources() if policies.of_resource(r) is None]
    assert missing == []


async def test_unmatched_paths_need_a_key_except_where_a_module_claimed_them(
        locked: TestClient[Any, Any]) -> None:
    for path in ("/nope", "/live/1/2", "/api/nope", "/ui", "/hls", "/auto/"):
        assert (await locked.get(path)).status == 401, path
    # token-protected, public and HDHomeRun spaces: an unknown path there is simply not found
    for path in ("/hls/a/b", "/hls/a/b/c/d", "/remux/a/b", "/ui/a/b", "/auto/vabc"):
        assert (await locked.get(path)).status == 404, path


async def test_a_refused_method_takes_the_policy_of_the_path(locked: TestClient[Any, Any]) -> None:
    assert (await locked.post("/healthz")).status == 405  # public: no key asked for
    refused = await locked.delete("/api/channels")
    assert refused.status == 401
    assert (await refused.json())["error"]  # the API answers JSON, even to a method it lacks
    allowed = await locked.delete("/api/channels", headers={"X-API-Key": KEY})
    assert allowed.status == 405


async def test_unknown_api_paths_answer_json(locked: TestClient[Any, Any]) -> None:
    resp = await locked.get("/api/nope")
    assert resp.status == 401
    assert resp.content_type == "application/json"
    plain = await locked.get("/nope")
    assert plain.content_type == "text/plain"


async def test_switched_off_features_keep_their_404s(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(emulator, **{"auth.api_keys": [KEY], "hdhomerun.enabled": False,
                                             "ui.enabled": False})
    for path in ("/discover.json", "/lineup.json", "/device.xml", "/auto/v4.1", "/", "/ui/app.js"):
        assert (await proxy.get(path)).status == 404, path
    assert (await proxy.get("/playlist.m3u")).status == 401


async def handler(request: web.Request) -> web.Response:
    return web.Response()


def test_one_resource_takes_one_policy() -> None:
    app = web.Application()
    add_route(app, "GET", "/same", handler, access=Access.PUBLIC)
    add_route(app, "POST", "/same", handler, access=Access.PUBLIC)  # the same resource, the same policy
    with pytest.raises(ValueError, match="two policies"):
        add_route(app, "DELETE", "/same", handler, access=Access.KEY)
    policies = app[ROUTE_POLICIES_KEY]
    assert isinstance(policies, RoutePolicies)
    assert [policies.of_resource(r) for r in app.router.resources()] == [Policy(Access.PUBLIC)]
