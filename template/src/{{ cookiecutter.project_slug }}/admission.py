"""Admission control: each worker serves at most its admission limit of database requests.

Past the limit a request is answered 503 with Retry-After at once, instead of queueing
until the client gives up. The gate is a dependency of the session and read connection
dependencies (db.py), so only requests that use the database pass through it: /healthz and
handlers without either are never refused. It is an `async def` dependency, so FastAPI runs
it on the event loop before anything else: a refused request never takes a thread or a
connection.

The count lives on the worker's event loop, so a plain integer is enough: no other thread
touches it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request


class OverloadedError(Exception):
    """The worker is serving as many database requests as its plan admits."""


@dataclass
class AdmissionGate:
    """Counts the database requests a worker is serving, up to `limit`."""

    limit: int
    in_flight: int = 0

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


async def admit(request: Request) -> AsyncIterator[None]:
    """Hold an admission slot for the rest of the handler, or refuse with OverloadedError (503)."""
    gate: AdmissionGate = request.app.state.admission
    if not gate.try_enter():
        raise OverloadedError
    try:
        yield
    finally:
        gate.leave()


# scope="function": the slot is given back when the handler returns, with its connection.
Admitted = Annotated[None, Depends(admit, scope="function")]
