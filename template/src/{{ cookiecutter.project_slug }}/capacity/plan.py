"""The capacity plan's numbers, and whether they fit: pure arithmetic, no I/O.

The same numbers serve the startup check, the admission gate, the thread pool,
`python -m <package>.capacity` and the tests; the sentences that name them are wording.py's.

The model:

- Every Gunicorn worker is a process with its own pool of `pool_size`
  connections, plus up to `max_overflow` more under bursts.
- A fleet runs `replicas` instances, and during a rolling deploy up to
  `max_surge` more, old and new holding their pools at once. Its peak is
  (replicas + max_surge) x workers x (pool_size + max_overflow), and that
  must fit in what the server allows minus what must stay free:
  db_max_connections - db_reserved_connections.
- A worker admits a database-using request while it can expect a connection within
  `queue_budget_ms` (see admission.py): one permit per connection, and a queue in front of
  them that a request joins only if its expected wait fits the budget, and leaves with a 503
  once it has waited the budget. `admission_queue` caps that queue whatever the estimate, to
  bound memory: connections + queue is the most database requests a worker holds at once.
- Sync handlers each hold a thread from AnyIO's pool while they run. Queued requests wait on
  the event loop, not in a thread, and an admitted one holds a connection's permit: the
  thread limit is therefore one thread per connection plus spare threads, so that admitted
  database requests never wait for a thread and handlers that do not touch the database
  (blocking HTTP calls, file work) still find one. A handler that holds two connections at
  once can still deadlock a pool sized to its admitted requests: keep to one session per
  request.
- Behind PgBouncer in transaction pooling, the service's connections are PgBouncer's clients:
  the fleet's peak must fit PgBouncer's `max_client_conn` instead, and what PostgreSQL sees is
  PgBouncer's server pool (`pgbouncer_pool_size`, shared by all of those clients one
  transaction at a time), which must fit db_max_connections - db_reserved_connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import wording

Driver = Literal["async", "sync"]

# AnyIO's default thread pool; async handlers keep it, as no database work runs there.
ANYIO_DEFAULT_THREADS = 40

# QUEUE_BUDGET_MS when unset (settings.py): half a second. 64 keep-alive clients on one 2-core
# machine queued 60 ms on average and up to about 250 ms at the tail, which is load to serve,
# not to refuse; an overloaded worker's admitted requests still wait no longer than this.
DEFAULT_QUEUE_BUDGET_MS = 500
# SPARE_THREADS when unset: with `def` handlers, threads for those that do not use the database.
DEFAULT_SPARE_THREADS = 8

# Queued requests allowed per connection when ADMISSION_QUEUE is unset. The queue budget
# decides who waits; this only bounds memory: at 1 ms queries a worker with 10 connections
# serves 80 queued requests within 8 ms, so the cap is rarely what refuses.
QUEUE_PER_CONNECTION = 8


@dataclass(frozen=True)
class PlanInputs:
    """What the plan is computed from: the answers, as overridden by the environment.

    Every field is required: the defaults are the settings' (settings.py, defaults.py), so
    that no second set of them can drift from what the service runs with.
    """

    driver: Driver
    replicas: int
    max_surge: int
    workers: int
    pool_size: int
    max_overflow: int
    db_max_connections: int
    db_reserved_connections: int
    queue_budget_ms: int
    admission_queue: int | None  # None: QUEUE_PER_CONNECTION per connection
    spare_threads: int
    # PgBouncer between the service and PostgreSQL (transaction pooling). Its numbers count
    # only when `pgbouncer` is true.
    pgbouncer: bool
    pgbouncer_max_client_conn: int
    pgbouncer_pool_size: int


@dataclass(frozen=True)
class CapacityPlan:
    """The numbers derived from PlanInputs, and whether they fit."""

    inputs: PlanInputs

    @property
    def connections_per_worker(self) -> int:
        return self.inputs.pool_size + self.inputs.max_overflow

    @property
    def connections_per_instance(self) -> int:
        return self.inputs.workers * self.connections_per_worker

    @property
    def instances_at_peak(self) -> int:
        return self.inputs.replicas + self.inputs.max_surge

    @property
    def steady_connections(self) -> int:
        return self.inputs.replicas * self.connections_per_instance

    @property
    def peak_connections(self) -> int:
        return self.instances_at_peak * self.connections_per_instance

    @property
    def available_connections(self) -> int:
        return self.inputs.db_max_connections - self.inputs.db_reserved_connections

    @property
    def client_limit(self) -> int:
        """What the service's peak connections must fit in: PgBouncer's max_client_conn behind
        PgBouncer, else what PostgreSQL leaves this service."""
        if self.inputs.pgbouncer:
            return self.inputs.pgbouncer_max_client_conn
        return self.available_connections

    @property
    def headroom(self) -> int:
        """The service's connections left over at peak; negative when the plan does not fit."""
        return self.client_limit - self.peak_connections

    @property
    def server_connections(self) -> int:
        """The most connections PostgreSQL sees from this service: PgBouncer's server pool
        behind PgBouncer, else the fleet's peak."""
        if self.inputs.pgbouncer:
            return self.inputs.pgbouncer_pool_size
        return self.peak_connections

    @property
    def server_headroom(self) -> int:
        """PostgreSQL's connections left over; negative when the plan does not fit."""
        return self.available_connections - self.server_connections

    @property
    def admission_queue(self) -> int:
        """The most requests a worker lets queue for a connection."""
        if self.inputs.admission_queue is not None:
            return self.inputs.admission_queue
        return QUEUE_PER_CONNECTION * self.connections_per_worker

    @property
    def admission_limit(self) -> int:
        """The most database-using requests one worker serves or queues at once."""
        return self.connections_per_worker + self.admission_queue

    @property
    def queue_budget(self) -> float:
        """Seconds a database request may wait for a connection before it is refused."""
        return self.inputs.queue_budget_ms / 1000

    @property
    def thread_limit(self) -> int:
        """AnyIO worker threads per worker process."""
        if self.inputs.driver == "sync":
            return self.connections_per_worker + self.inputs.spare_threads
        return ANYIO_DEFAULT_THREADS

    @property
    def largest_pool_size(self) -> int:
        """The largest pool_size that fits with the other inputs unchanged (0: none does)."""
        per_worker = self.client_limit // (self.instances_at_peak * self.inputs.workers)
        return max(0, per_worker - self.inputs.max_overflow)

    @property
    def largest_workers(self) -> int:
        """The largest worker count that fits with the other inputs unchanged (0: none does)."""
        return max(0, self.client_limit // (self.instances_at_peak * self.connections_per_worker))

    def problems(self) -> list[str]:
        """Why the plan cannot work, in words that name the numbers; empty when it fits.

        In the order of the questions asked at generation, so that the first problem is
        the one generation names: the service's side first, then the database server's.
        """
        i = self.inputs
        found = [message for message in _range_problems(i) if message]
        if found:
            return found
        if i.pgbouncer and self.peak_connections > self.client_limit:
            found.append(wording.over_budget(self))
        if server_range := [message for message in _server_range_problems(i) if message]:
            return found + server_range
        if self.server_connections > self.available_connections:
            found.append(
                wording.over_pgbouncer_pool(self) if i.pgbouncer else wording.over_budget(self)
            )
        return found

    @property
    def fits(self) -> bool:
        return not self.problems()


def _range_problems(i: PlanInputs) -> list[str]:
    """Impossible values among what the service's side of the plan is computed from."""
    return [
        _below("workers", i.workers, 1),
        _below("pool_size", i.pool_size, 1),
        _below("max_overflow", i.max_overflow, 0),
        _below("replicas", i.replicas, 1),
        _below("max_surge", i.max_surge, 0),
        # PgBouncer's numbers mean nothing without PgBouncer: not checked then.
        _below(
            "pgbouncer_max_client_conn", i.pgbouncer_max_client_conn if i.pgbouncer else None, 1
        ),
        _below("pgbouncer_pool_size", i.pgbouncer_pool_size if i.pgbouncer else None, 1),
        _below("admission_queue", i.admission_queue, 0),
        _below("spare_threads", i.spare_threads, 1),
        _below("queue_budget_ms", i.queue_budget_ms, 1),
    ]


def _server_range_problems(i: PlanInputs) -> list[str]:
    """Impossible values among what the database server's side is computed from."""
    return [
        _below("db_max_connections", i.db_max_connections, 1),
        (
            f"db_reserved_connections: {i.db_reserved_connections}"
            f" must be from 0 to {i.db_max_connections - 1}"
            if not 0 <= i.db_reserved_connections < i.db_max_connections
            else ""
        ),
    ]


def _below(name: str, value: int | None, least: int) -> str:
    """Why `value` is impossible when it is under `least`; "" when it is not, or is unset."""
    if value is None or value >= least:
        return ""
    return f"{name}: {value} must " + ("not be negative" if least == 0 else f"be at least {least}")
