"""The service's Prometheus metrics, and the registry /metrics reads (api/metrics.py).

Under gunicorn every worker writes to files in PROMETHEUS_MULTIPROC_DIR (metrics_dir.py), so a
scrape reaching any worker reports the whole instance: counters are summed over every worker
that ever ran (a dead one's too), gauges over the live ones only (multiprocess_mode="livesum";
"livemax" for the per-worker limits, the same in every worker). Only files are read at scrape
time, so nothing here is computed on scrape: each value is written when it changes, by the
request middleware (observe.py), the admission gate (admission.py's observer), the pool's
events (watch_pool) and the 503/504 mapping (overload.py).

Labels are few and bounded: route templates, not paths (one series per route, whatever the
ids); outcomes and reasons from fixed lists.
"""

import os
from functools import cache

from anyio import CapacityLimiter
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from sqlalchemy import event
from sqlalchemy.pool import Pool, QueuePool

from .metrics_dir import VARIABLE

PREFIX = "{{ cookiecutter.project_slug }}"

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its answer's end.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight", "Requests being served now.", multiprocess_mode="livesum"
)

ADMISSION = Counter(
    f"{PREFIX}_admission_decisions_total",
    "The admission gate's decisions on database requests: admitted (at_once or"
    " after_queueing) or refused (expected_wait, queue_full, waited_budget).",
    ["outcome", "reason"],
)
PERMITS = Gauge(
    f"{PREFIX}_admission_permits",
    "Database requests one worker serves at once (its connections).",
    multiprocess_mode="livemax",
)
QUEUE_BUDGET = Gauge(
    f"{PREFIX}_admission_queue_budget_seconds",
    "Longest a database request may wait for a connection before it is refused (QUEUE_BUDGET_MS).",
    multiprocess_mode="livemax",
)
CONNECTION_WAIT = Histogram(
    "db_connection_wait_seconds",
    "Time an admitted database request waited for a connection (a permit of the admission"
    " gate, one per pooled connection); 0 when one was free.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
POOL_SIZE = Gauge(
    "db_pool_size",
    "Connections the workers' pools keep (DB_POOL_SIZE each).",
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out",
    "Pooled connections in use by requests now.",
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "db_pool_overflow",
    "Connections in use beyond the pools' size now (up to DB_MAX_OVERFLOW each).",
    multiprocess_mode="livesum",
)
TIMEOUTS = Counter(
    f"{PREFIX}_timeouts_total",
    "504 answers by cause: the service's deadline (REQUEST_TIMEOUT) or PostgreSQL's"
    " statement_timeout.",
    ["cause"],
)
DEADLINE_PASSED = TIMEOUTS.labels("deadline")
STATEMENT_TIMEOUT = TIMEOUTS.labels("statement_timeout")


def registry() -> CollectorRegistry:
    """What /metrics reports: every worker's files under gunicorn, else this process's own."""
    if not os.environ.get(VARIABLE):
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
    return collected


class AdmissionMetrics:
    """The admission gate's observer: counts its decisions, and the waits for a connection."""

    def __init__(self, permits: int, queue_budget: float) -> None:
        PERMITS.set(permits)
        QUEUE_BUDGET.set(queue_budget)
        # Labelled children made once: a decision costs one increment, no label lookup.
        self._at_once = ADMISSION.labels("admitted", "at_once")
        self._after_queueing = ADMISSION.labels("admitted", "after_queueing")
        self._refused = {
            reason: ADMISSION.labels("refused", reason)
            for reason in ("expected_wait", "queue_full", "waited_budget")
        }

    def admitted(self, waited: float, queued: bool) -> None:
        (self._after_queueing if queued else self._at_once).inc()
        CONNECTION_WAIT.observe(waited)

    def refused(self, reason: str) -> None:
        self._refused[reason].inc()


@cache
def _threads_in_use() -> Gauge:
    # Made on first use: only a project whose handlers run in threads has this metric.
    return Gauge(
        f"{PREFIX}_threads_in_use",
        "Threads running handlers now, of the plan's thread limit.",
        multiprocess_mode="livesum",
    )


def watch_pool(pool: Pool, threads: CapacityLimiter | None = None) -> None:
    """Keep the pool gauges (and the threads in use, given the handlers' limiter) up to date
    from the pool's own events: a checkout or a checkin is when they change.

    Counted here rather than read from the pool: its "checkin" event fires before the
    connection is back in the queue, when the pool's own counts still include it.
    """
    if not isinstance(pool, QueuePool):
        return
    size = pool.size()
    POOL_SIZE.set(size)
    in_use = _threads_in_use() if threads is not None else None
    checked_out = 0

    def changed(by: int) -> None:
        nonlocal checked_out
        checked_out += by
        POOL_CHECKED_OUT.set(checked_out)
        POOL_OVERFLOW.set(max(0, checked_out - size))
        if in_use is not None and threads is not None:
            in_use.set(threads.borrowed_tokens)

    event.listen(pool, "checkout", lambda *_: changed(1))
    event.listen(pool, "checkin", lambda *_: changed(-1))
