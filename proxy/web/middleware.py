"""Middlewares and signals shared by every route.

- ``error_middleware`` turns :class:`ProxyError` into a short response a client can act
  on (plain text, or JSON where the route declares ``json_errors``: the API) and anything
  unexpected into a 500 that is logged once with its traceback. Cancellation (client gone,
  shutdown) is re-raised.
- ``observe_middleware`` writes the access log line and the request metrics, labelled by
  route template, never by raw path. A client that left mid-response counts as 499 (nginx's
  "client closed request"), not as a 5xx.
- ``add_cors_headers`` runs on *every* prepared response, streaming ones and errors
  included: hls.js in a browser on another origin needs ``Access-Control-Allow-Origin``. It
  also sets ``X-Content-Type-Options: nosniff`` everywhere, so a browser never runs a relayed
  body as a page or script whatever it looks like.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from proxy.errors import NoTunerAvailable, ProxyError, ServiceUnavailable
from proxy.keys import CONFIG_KEY, METRICS_KEY
from proxy.web.routes import StreamKind, route_policy

__all__ = [
    "add_cors_headers",
    "error_middleware",
    "error_response",
    "limit_middleware",
    "observe_middleware",
    "preflight_middleware",
    "route_template",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger("proxy.web")
access_log = logging.getLogger("proxy.access")

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, Retry-After, ETag",
}
_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, HEAD, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-Range, Content-Type, X-API-Key, Authorization",
    "Access-Control-Max-Age": "600",
}


def route_template(request: web.Request) -> str:
    """The matched route's template (``/live/{channel_id}.m3u8``), a bounded label value."""
    info = request.match_info
    if info.http_exception is not None:
        return "<unmatched>"
    resource = info.route.resource
    if resource is None:
        return "<unmatched>"
    return resource.canonical


def stream_kind(request: web.Request) -> StreamKind:
    """``hls``, ``ts`` or ``recording``: the kind label of a stream request (declared by its route)."""
    return route_policy(request).kind


def error_response(request: web.Request, exc: ProxyError) -> web.Response:
    headers = dict(exc.headers)
    if route_policy(request).json_errors:
        body: dict[str, object] = {"error": exc.reason, "message": exc.message}
        field = getattr(exc, "field", None)
        if field:
            body["field"] = field
        if exc.hint:
            body["hint"] = exc.hint
        return web.json_response(body, status=exc.status, headers=headers)
    resp = web.Response(status=exc.status, text=exc.body(), headers=headers, content_type="text/plain")
    if exc.status >= 400:
        resp.headers[hdrs.CACHE_CONTROL] = "no-store"
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as exc:
        metrics = request.app[METRICS_KEY]
        metrics.errors.labels(exc.reason).inc()
        if isinstance(exc, NoTunerAvailable):
            metrics.tuner_exhausted.labels(stream_kind(request)).inc()
        log.info("%s %s -> %d %s: %s", request.method, route_template(request), exc.status,
                 exc.reason, exc.message)
        return error_response(request, exc)
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise  # the client left: observe_middleware counts it as 499
    except Exception:
        log.exception("unexpected error in %s %s", request.method, route_template(request))
        if route_policy(request).json_errors:
            return web.json_response({"error": "internal_error", "message": "internal error"}, status=500)
        return web.Response(status=500, text="internal error\n", content_type="text/plain")


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # nginx's "client closed request"
        raise
    except ConnectionError:
        # the client went away mid-response (reset during prepare or a write, or cut off by the
        # send timeout). Raised on, aiohttp would log a traceback at ERROR for every zapping viewer;
        # answered here, aiohttp's attempt to send this response fails quietly on the dead socket.
        status = 499
        log.debug("%s %s: the client went away", request.method, route_template(request))
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)
    finally:
        elapsed = time.perf_counter() - start
        route = route_template(request)
        metrics = request.app[METRICS_KEY]
        metrics.requests.labels(route, request.method, f"{status // 100}xx").inc()
        metrics.request_duration.labels(route).observe(elapsed)
        config = request.app.get(CONFIG_KEY)
        if config is None or config.logging.access_log:
            # the raw path may hold tokens (harmless) and api_key (redacted by the formatter)
            access_log.info("%s %s %s %d %.1fms", request.remote, request.method, request.rel_url,
                            status, elapsed * 1000,
                            extra={"status": status, "method": request.method, "path": route,
                                   "remote": request.remote, "duration_ms": round(elapsed * 1000, 1)})


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"
    for key, value in _CORS.items():
        response.headers.setdefault(key, value)
    if request.method == hdrs.METH_OPTIONS:
        for key, value in _PREFLIGHT.items():
            response.headers.setdefault(key, value)


def limit_middleware(max_clients: int) -> Middleware:
    """At most ``max_clients`` requests in flight (probes exempt): every viewer holds a
    handler and a bounded buffer, so this bounds the proxy's memory as a whole."""
    in_flight = 0

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if not route_policy(request).limited:
            return await handler(request)
        if in_flight >= max_clients:
            raise ServiceUnavailable("Too many clients at once; try again shortly.",
                                     headers={hdrs.RETRY_AFTER: "5"})
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    return limit


@web.middleware
async def preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflight requests for any path (a catch-all OPTIONS route would turn every
    unknown path into a 405 instead of a 404)."""
    if request.method == hdrs.METH_OPTIONS:
        return web.Response(status=204)
    return await handler(request)
