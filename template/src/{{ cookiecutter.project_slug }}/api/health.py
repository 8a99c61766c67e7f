"""Probes for the orchestrator: is the process alive, and can it serve requests?

Both handlers are `async def`, whatever the driver, so they run on the event loop. /healthz never
waits for a thread or a connection and answers even when the worker is saturated. /readyz
needs a pooled connection (and, with a blocking driver, a thread for the query); if it cannot get
them within READINESS_TIMEOUT, the worker is too busy or the database is gone: 503 either way.
While the worker drains before it stops (DRAIN_SECONDS, see worker.py), /readyz answers 503 at
once, so a load balancer stops sending it new requests, which it still serves meanwhile.
"""

import logging
from typing import Literal

import anyio
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from ..db import ping
from ..settings import Settings

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


@router.get("/healthz")
async def healthz() -> Health:
    """Liveness: never touches the database.

    A database outage must not get every instance restarted: restarts cannot fix it, and a
    fleet of restarting instances would only make recovery slower.
    """
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health}},
)
async def readyz(request: Request, response: Response) -> Health:
    """Readiness: the database answers `SELECT 1` within READINESS_TIMEOUT, or 503."""
    if getattr(request.app.state, "draining", False):  # set by the worker on SIGTERM
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable")
    settings: Settings = request.app.state.settings
    try:
        with anyio.fail_after(settings.readiness_timeout):
            await ping(request.app.state.engine)
    # Whatever went wrong (refused, timed out, pool exhausted, authentication...), the answer
    # to "can this instance serve?" is no: a 503 that takes it out of the load balancer,
    # never a 500. The log says why.
    except Exception as error:
        logger.warning("readiness check failed: %r", error)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable")
    return Health(status="ok")
