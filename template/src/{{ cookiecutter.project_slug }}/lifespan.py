"""What each worker sets up when it starts serving and tears down when it stops.

The lifespan runs in every gunicorn worker after the fork (the app is never preloaded in the
master), so each worker gets its own connection pool, and no socket is shared across
processes. Each resource adds one context manager here; they close in reverse order.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from .admission import AdmissionGate, refusal
from .capacity import wording
from .db import open_database
from .metrics import AdmissionMetrics
from .settings import Settings
from .tracing import exported_at_shutdown

logger = logging.getLogger(__name__)


class CapacityError(RuntimeError):
    """The settings make a capacity plan that cannot work; the worker must not serve."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    apply_capacity_plan(app, settings)
    # Spans are exported last, after the pool is disposed: nothing traced is left behind.
    async with exported_at_shutdown(app), open_database(app, settings):
        yield


def apply_capacity_plan(app: FastAPI, settings: Settings) -> None:
    """Refuse to serve on a plan that does not fit; else size threads and admission from it.

    gunicorn.conf.py checks the same plan before forking; this check covers every other way
    of starting the app (uvicorn, tests) and a worker whose environment differs.
    """
    if problems := settings.plan_problems():
        raise CapacityError(wording.does_not_fit(problems))
    plan = settings.capacity_plan()
    # Sync handlers hold a thread while they run: one per connection an admitted request may
    # hold, plus spare ones for handlers that do not use the database (see capacity/plan.py).
    threads = anyio.to_thread.current_default_thread_limiter()
    threads.total_tokens = plan.thread_limit
    app.state.threads = threads
    app.state.admission = AdmissionGate(
        permits=plan.connections_per_worker,
        queue_budget=plan.queue_budget,
        max_queue=plan.admission_queue,
        observer=AdmissionMetrics(plan.connections_per_worker, plan.queue_budget),
    )
    app.state.refusal = refusal(settings.retry_after)
    logger.info("worker %d: %s", os.getpid(), wording.admission(plan))
