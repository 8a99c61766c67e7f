"""RefuseBeforeRouting: the admission gate's immediate refusals, answered before routing.

Under overload most requests are refused, and every microsecond a refusal costs is taken from
the requests being served on the same core. A refusal made by the route (AdmissionRoute) pays
for FastAPI's routing, the deadline's timer, the exception middleware and the request object
first; measured in one worker, that is about two thirds of a refusal's cost inside the app.
This middleware sits inside the request ID and the metrics (so a refusal still carries its
X-Request-ID, is counted and gets its access line) and outside everything else. When the gate
would refuse a request at once (its queue is full, or the wait it can expect passes the
budget) and the request is for a route that uses the database, it answers the prepared 503
itself. Every other request goes on as before, and AdmissionRoute stays the one that admits,
queues, and refuses what waited its budget.

Which route a request is for is read from a table made once from the app's routes: each
route's path pattern, methods, and whether it is admitted (AdmissionRoute with a database
dependency), in the order FastAPI matches them. Hand-written: FastAPI offers no way to match a
request to its route without running it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admission import AdmissionGate, AdmissionRoute, uses_database


@dataclass(frozen=True)
class _Pattern:
    path: re.Pattern[str]
    methods: frozenset[str] | None  # None: any method (a mount)
    route: BaseRoute
    admitted: bool


def route_table(app: FastAPI) -> list[_Pattern]:
    """The app's routes as FastAPI matches them: first full match wins."""
    table = []
    for context in iter_route_contexts(app.router.routes):
        route, path = context.route, context.path
        if path is None:
            continue
        if isinstance(route, Mount):
            pattern, _, _ = compile_path(path.rstrip("/") + "/{path:path}")
            table.append(_Pattern(pattern, None, route, admitted=False))
            continue
        methods: set[str] | None = getattr(route, "methods", None)
        if methods is None:  # a WebSocket route: never an http request's
            continue
        pattern, _, _ = compile_path(path)
        admitted = isinstance(route, AdmissionRoute) and uses_database(route)
        table.append(_Pattern(pattern, frozenset(methods), route, admitted))
    return table


class RefuseBeforeRouting:
    def __init__(self, app: ASGIApp, service: FastAPI) -> None:
        self.app = app
        self.service = service
        self._table: list[_Pattern] | None = None  # made at the first refusal: routes are all in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            gate: AdmissionGate | None = getattr(self.service.state, "admission", None)
            if gate is not None and (reason := gate.refusal_reason()) is not None:
                route = self._database_route(scope)
                if route is not None:
                    gate.refuse(reason)
                    scope["route"] = route  # the metrics and the access line name its path
                    await self._refuse(send)
                    return
        await self.app(scope, receive, send)

    def _database_route(self, scope: Scope) -> APIRoute | None:
        """The admitted route this request is for; None if it is for any other."""
        if self._table is None:
            self._table = route_table(self.service)
        path, method = scope["path"], scope["method"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # as Starlette's router does: routes omit root_path
            path = path[len(root) :]
        for pattern in self._table:
            if pattern.path.match(path) and (pattern.methods is None or method in pattern.methods):
                return pattern.route if pattern.admitted else None  # type: ignore[return-value]
        return None

    async def _refuse(self, send: Send) -> None:
        prepared = self.service.state.refusal
        start: Message = {
            "type": "http.response.start",
            "status": prepared.status_code,
            "headers": list(prepared.raw_headers),  # a copy: the middlewares outside add theirs
        }
        await send(start)
        await send({"type": "http.response.body", "body": prepared.body})
