"""ObserveRequests: per request, the metrics of metrics.py and the one access line of logs.py.

A pure ASGI middleware (BaseHTTPMiddleware would run the app in a task of its own and copy
every response through a stream). It sits outside RequestDeadline and the routes, so it sees
every answer, the refusals of the admission gate and the deadline's 504s included, and inside
the request ID middleware, so its access line carries the ID. Written by hand because the
Prometheus ASGI middlewares (starlette-exporter, prometheus-fastapi-instrumentator) are not
built for multiprocess gauges and write no access line.

The route is the template FastAPI matched (/items/{item_id}), read from the scope after the
app ran; a request no route matched is "unmatched", so a client's paths cannot make series.
"""

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import ACCESS_LOGGER
from .metrics import IN_FLIGHT, LATENCY, REQUESTS

access = logging.getLogger(ACCESS_LOGGER)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    route: BaseRoute | None = scope.get("route")
    return getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED


class ObserveRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Labelled children by label values, made once each: a request costs a dict lookup.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._latencies: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            IN_FLIGHT.dec()
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, duration: float) -> None:
        method = scope["method"]
        if method not in METHODS:
            method = "other"  # a client's made-up methods must not make series either
        route = route_template(scope)
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = self._counters[route, method, status] = REQUESTS.labels(
                route, method, str(status)
            )
        counter.inc()
        latency = self._latencies.get((route, method))
        if latency is None:
            latency = self._latencies[route, method] = LATENCY.labels(route, method)
        latency.observe(duration)
        if access.isEnabledFor(logging.INFO):
            milliseconds = round(duration * 1000, 3)
            access.info(
                "%s %s %d %.1f ms",
                method,
                scope["path"],
                status,
                milliseconds,
                extra={
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": milliseconds,
                },
            )
