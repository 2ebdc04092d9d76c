"""Route policy: who may call a route, whether it counts against the client limit, how its
errors read and which stream kind it serves, declared where the route is added.

Every ``web/*`` module adds its routes with :func:`add_route`, which stores a :class:`Policy`
keyed by the aiohttp resource; the middlewares (auth, client limit, errors, tuner metrics)
read it from ``request.match_info.route.resource`` instead of parsing the path.

Requests no route matches keep answers that do not depend on what is switched on:

- a 405 (path known, method not) takes the policy of the resource whose path matched, so
  ``DELETE /api/channels`` still answers JSON and ``POST /healthz`` is still public;
- a 404 takes the policy of the path a module *claimed* with :func:`claim` (``/hls/`` is
  token-protected, so an unknown segment is a 404, not a 401; ``/api/`` answers JSON); a
  module claims its paths even when its feature is off, so switching the HDHomeRun device
  or the web page off does not turn their 404s into 401s;
- anything else gets :data:`DEFAULT` (an API key, when keys are configured).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import hdrs, web
from aiohttp.web import AbstractResource

__all__ = [
    "DEFAULT",
    "ROUTE_POLICIES_KEY",
    "Access",
    "Policy",
    "RoutePolicies",
    "StreamKind",
    "add_route",
    "claim",
    "route_policy",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: the ``kind`` label of the tuner metrics
StreamKind = Literal["hls", "ts", "recording"]


class Access(enum.Enum):
    PUBLIC = "public"
    TOKEN = "token"
    HDHOMERUN = "hdhomerun"
    KEY = "key"


@dataclass(frozen=True, slots=True)
class Policy:
    access: Access = Access.KEY
    #: the tuner-exhausted label; only streaming routes can run out of tuners
    kind: StreamKind = "ts"
    #: errors as JSON (the API) instead of plain text
    json_errors: bool = False
    #: counts against ``server.max_clients`` (probes and metrics do not: they must answer when full)
    limited: bool = True


DEFAULT = Policy()


class RoutePolicies:
    """The policies of one app's resources, and of the paths modules claimed for 404s."""

    def __init__(self) -> None:
        self._resources: dict[AbstractResource, Policy] = {}
        self._exact: dict[str, Policy] = {}
        self._prefixes: list[tuple[str, Policy]] = []

    def bind(self, resource: AbstractResource, policy: Policy) -> None:
        known = self._resources.get(resource)
        if known is not None and known != policy:
            # aiohttp reuses a resource for a second method on the same path: one policy per path
            raise ValueError(f"{resource.canonical}: two policies for one resource ({known} and {policy})")
        self._resources[resource] = policy

    def claim(self, path: str, policy: Policy, *, prefix: bool) -> None:
        if prefix:
            self._prefixes.append((path, policy))
        else:
            self._exact[path] = policy

    def of_resource(self, resource: AbstractResource) -> Policy | None:
        return self._resources.get(resource)

    def of_path(self, path: str) -> Policy:
        found = self._exact.get(path)
        if found is not None:
            return found
        for prefix, policy in self._prefixes:
            if path.startswith(prefix):
                return policy
        return DEFAULT


ROUTE_POLICIES_KEY = web.AppKey("route_policies", RoutePolicies)


def _policies(app: web.Application) -> RoutePolicies:
    policies = app.get(ROUTE_POLICIES_KEY)
    if policies is None:
        policies = app[ROUTE_POLICIES_KEY] = RoutePolicies()
    return policies


def add_route(app: web.Application, method: str, path: str, handler: Handler, *,
              access: Access = Access.KEY, kind: StreamKind = "ts", json_errors: bool = False,
              limited: bool = True) -> web.AbstractRoute:
    """``app.router.add_route`` plus the route's policy (a GET route also answers HEAD, as
    ``add_get`` does)."""
    if method == hdrs.METH_GET:
        route = app.router.add_get(path, handler)
    else:
        route = app.router.add_route(method, path, handler)
    assert route.resource is not None  # a route added by path always has one
    _policies(app).bind(route.resource, Policy(access, kind, json_errors, limited))
    return route


def claim(app: web.Application, path: str, *, prefix: bool = False, access: Access = Access.KEY,
          json_errors: bool = False) -> None:
    """The policy of requests to ``path`` (or under it, with ``prefix``) that no route matches."""
    _policies(app).claim(path, Policy(access, json_errors=json_errors), prefix=prefix)


def _matches_path(resource: AbstractResource, path: str) -> bool:
    """Whether ``resource`` matches ``path`` whatever the method (as aiohttp's resources do:
    plain paths by equality, templates by their pattern)."""
    info = resource.get_info()
    if "path" in info:
        return info["path"] == path
    pattern = info.get("pattern")
    return pattern is not None and pattern.fullmatch(path) is not None


def route_policy(request: web.Request) -> Policy:
    """The policy of the route ``request`` matched (synchronous: every request asks, twice)."""
    policies = request.app.get(ROUTE_POLICIES_KEY)
    if policies is None:  # an app whose modules added no route
        return DEFAULT
    info = request.match_info
    resource = info.route.resource
    if resource is not None:
        return policies.of_resource(resource) or DEFAULT
    if isinstance(info.http_exception, web.HTTPMethodNotAllowed):
        # aiohttp does not say which resource refused the method: find it (only on a 405)
        path = request.rel_url.path_safe  # what the router matched against
        for candidate in request.app.router.resources():
            if _matches_path(candidate, path):
                return policies.of_resource(candidate) or DEFAULT
    return policies.of_path(request.path)
