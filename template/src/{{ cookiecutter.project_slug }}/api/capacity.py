"""GET /capacity: this worker's capacity plan and how much of it is in use right now.

Each answer comes from the one worker that served it, so the numbers are per worker.
"""

import os

from anyio import CapacityLimiter
from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..admission import AdmissionGate
from ..settings import Settings

router = APIRouter(tags=["operations"])


class Usage(BaseModel):
    limit: int
    in_use: int


class Admission(BaseModel):
    """The admission gate (admission.py): its permits, its queue and what it decided."""

    limit: int  # connections + the queue's cap: the most database requests held at once
    connections: int  # permits: one per pooled connection
    in_use: int
    queued: int
    queue_limit: int
    queue_budget_ms: int
    expected_wait_ms: float  # for a database request arriving now
    mean_hold_ms: float  # how long an admitted request holds its connection, on average
    admitted: int
    refused: int
    refused_because: dict[str, int]  # expected wait over the budget, queue full, waited the budget


class WorkerCapacity(BaseModel):
    pid: int
    admission: Admission
    threads: Usage
    connections_per_worker: int
    peak_connections: int
    available_connections: int
    headroom: int


@router.get("/capacity")
def worker_capacity(request: Request) -> WorkerCapacity:
    """A plain `def` handler, run in the thread pool like any handler that does not use the
    database: the plan keeps spare threads for these, so it answers even when every admitted
    database request is busy."""
    settings: Settings = request.app.state.settings
    gate: AdmissionGate = request.app.state.admission
    threads: CapacityLimiter = request.app.state.threads
    plan = settings.capacity_plan()
    return WorkerCapacity(
        pid=os.getpid(),
        admission=Admission(
            limit=plan.admission_limit,
            connections=gate.permits,
            in_use=gate.in_use,
            queued=gate.queued,
            queue_limit=gate.max_queue,
            queue_budget_ms=settings.queue_budget_ms,
            expected_wait_ms=gate.expected_wait() * 1000,
            mean_hold_ms=gate.mean_hold * 1000,
            admitted=gate.stats.admitted_at_once + gate.stats.admitted_after_waiting,
            refused=gate.stats.refused,
            refused_because={
                "expected_wait": gate.stats.refused_expected_wait,
                "queue_full": gate.stats.refused_queue_full,
                "waited_budget": gate.stats.refused_waited_budget,
            },
        ),
        threads=Usage(limit=int(threads.total_tokens), in_use=int(threads.borrowed_tokens)),
        connections_per_worker=plan.connections_per_worker,
        peak_connections=plan.peak_connections,
        available_connections=plan.available_connections,
        headroom=plan.headroom,
    )
