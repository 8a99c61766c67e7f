"""The capacity plan: how many connections, threads and requests this service may hold.

Pure arithmetic on the settings, with no framework imports, so the same
numbers serve the startup check, the admission limiter, the thread pool,
`python -m <package>.capacity` and the tests.

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

Driver = Literal["async", "sync"]

# AnyIO's default thread pool; the async variant keeps it, as no database work runs there.
ANYIO_DEFAULT_THREADS = 40


# Queued requests allowed per connection when ADMISSION_QUEUE is unset. The queue budget
# decides who waits; this only bounds memory: at 1 ms queries a worker with 10 connections
# serves 80 queued requests within 8 ms, so the cap is rarely what refuses.
QUEUE_PER_CONNECTION = 8


def default_admission_queue(connections_per_worker: int) -> int:
    """The most requests a worker lets queue for a connection, when not set."""
    return QUEUE_PER_CONNECTION * connections_per_worker


@dataclass(frozen=True)
class PlanInputs:
    """What the plan is computed from: the answers, as overridden by the environment."""

    driver: Driver
    replicas: int
    max_surge: int
    workers: int
    pool_size: int
    max_overflow: int
    db_max_connections: int
    db_reserved_connections: int
    queue_budget_ms: int = 500
    admission_queue: int | None = None
    spare_threads: int = 8
    # PgBouncer between the service and PostgreSQL (transaction pooling). The numbers default
    # to PgBouncer's own defaults and count only when `pgbouncer` is true.
    pgbouncer: bool = False
    pgbouncer_max_client_conn: int = 100
    pgbouncer_pool_size: int = 20


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
        if self.inputs.admission_queue is not None:
            return self.inputs.admission_queue
        return default_admission_queue(self.connections_per_worker)

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
            found.append(self._over_budget())
        if server_range := [message for message in _server_range_problems(i) if message]:
            return found + server_range
        if self.server_connections > self.available_connections:
            found.append(self._over_pgbouncer_pool() if i.pgbouncer else self._over_budget())
        return found

    @property
    def fits(self) -> bool:
        return not self.problems()

    def _over_budget(self) -> str:
        """The service's peak exceeds what its connections meet: PostgreSQL or PgBouncer."""
        i = self.inputs
        pool = (
            f"the largest pool_size that fits is {self.largest_pool_size}"
            f" (with max_overflow {i.max_overflow})"
            if self.largest_pool_size >= 1
            else f"no pool_size fits with max_overflow {i.max_overflow} and {i.workers} workers"
        )
        workers = (
            f"the largest worker count that fits is {self.largest_workers}"
            if self.largest_workers >= 1
            else (
                f"no worker count fits with pool_size {i.pool_size} + max_overflow {i.max_overflow}"
                f" on {self.instances_at_peak} instances"
            )
        )
        fleet = (
            " (replicas + max_surge) x workers x (pool_size + max_overflow)"
            f" = ({i.replicas} + {i.max_surge}) x {i.workers} x ({i.pool_size} + {i.max_overflow})"
        )
        if i.pgbouncer:
            return (
                f"connection budget exceeded at PgBouncer:{fleet}"
                f" = {self.peak_connections} client connections,"
                f" but pgbouncer_max_client_conn is {i.pgbouncer_max_client_conn};"
                f" {pool}; {workers};"
                f" or raise pgbouncer_max_client_conn to {self.peak_connections}"
            )
        return (
            f"connection budget exceeded:{fleet}"
            f" = {self.peak_connections} connections,"
            " but db_max_connections - db_reserved_connections"
            f" = {i.db_max_connections} - {i.db_reserved_connections}"
            f" = {self.available_connections} are available; {pool}; {workers}"
        )

    def _over_pgbouncer_pool(self) -> str:
        """PgBouncer's server pool exceeds what PostgreSQL leaves this service."""
        i = self.inputs
        return (
            "connection budget exceeded behind PgBouncer:"
            f" pgbouncer_pool_size = {i.pgbouncer_pool_size} server connections,"
            " but db_max_connections - db_reserved_connections"
            f" = {i.db_max_connections} - {i.db_reserved_connections}"
            f" = {self.available_connections} are available;"
            f" the largest pgbouncer_pool_size that fits is {self.available_connections}"
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """The plan as (quantity, value, how it is derived), for tables and logs."""
        i = self.inputs
        rows = [
            (
                "connections per worker",
                str(self.connections_per_worker),
                f"pool_size {i.pool_size} + max_overflow {i.max_overflow}",
            ),
            (
                "connections per instance",
                str(self.connections_per_instance),
                f"{i.workers} workers x {self.connections_per_worker}",
            ),
            (
                "steady connections",
                str(self.steady_connections),
                f"{i.replicas} replicas x {self.connections_per_instance}",
            ),
            (
                "peak connections",
                str(self.peak_connections),
                f"({i.replicas} replicas + {i.max_surge} surge) x {self.connections_per_instance}",
            ),
            *(self._pgbouncer_rows() if i.pgbouncer else self._direct_rows()),
            (
                "queue budget",
                f"{i.queue_budget_ms} ms",
                "a database request queues only while it can expect a connection within this,"
                " and waits no longer; beyond it: 503",
            ),
            (
                "admission limit per worker",
                str(self.admission_limit),
                f"{self.connections_per_worker} connections + at most {self.admission_queue}"
                " queued; beyond it: 503",
            ),
        ]
        if i.driver == "sync":
            rows.append(
                (
                    "threads per worker",
                    str(self.thread_limit),
                    f"{self.connections_per_worker} connections + {i.spare_threads} spare threads",
                )
            )
        else:
            rows.append(
                (
                    "threads per worker",
                    str(self.thread_limit),
                    "AnyIO's default; database work stays off it",
                )
            )
        return rows

    def _available_row(self) -> tuple[str, str, str]:
        i = self.inputs
        return (
            "available connections",
            str(self.available_connections),
            f"max_connections {i.db_max_connections} - reserved {i.db_reserved_connections}",
        )

    def _direct_rows(self) -> list[tuple[str, str, str]]:
        return [
            self._available_row(),
            ("headroom at peak", str(self.headroom), "available - peak; must not be negative"),
        ]

    def _pgbouncer_rows(self) -> list[tuple[str, str, str]]:
        """Both sides of PgBouncer: the service's connections are its clients; PostgreSQL sees
        only its server pool."""
        i = self.inputs
        return [
            ("pgbouncer client limit", str(self.client_limit), "PgBouncer's max_client_conn"),
            (
                "headroom at peak",
                str(self.headroom),
                "pgbouncer client limit - peak; must not be negative",
            ),
            (
                "pgbouncer server connections",
                str(self.server_connections),
                f"pgbouncer_pool_size {i.pgbouncer_pool_size}, shared by every client"
                " (transaction pooling)",
            ),
            self._available_row(),
            (
                "server headroom",
                str(self.server_headroom),
                "available - pgbouncer server connections; must not be negative",
            ),
        ]


def _range_problems(i: PlanInputs) -> list[str]:
    """Impossible values among what the service's side of the plan is computed from."""
    return [
        f"workers: {i.workers} must be at least 1" if i.workers < 1 else "",
        f"pool_size: {i.pool_size} must be at least 1" if i.pool_size < 1 else "",
        f"max_overflow: {i.max_overflow} must not be negative" if i.max_overflow < 0 else "",
        f"replicas: {i.replicas} must be at least 1" if i.replicas < 1 else "",
        f"max_surge: {i.max_surge} must not be negative" if i.max_surge < 0 else "",
        (
            f"pgbouncer_max_client_conn: {i.pgbouncer_max_client_conn} must be at least 1"
            if i.pgbouncer and i.pgbouncer_max_client_conn < 1
            else ""
        ),
        (
            f"pgbouncer_pool_size: {i.pgbouncer_pool_size} must be at least 1"
            if i.pgbouncer and i.pgbouncer_pool_size < 1
            else ""
        ),
        (
            f"admission_queue: {i.admission_queue} must not be negative"
            if i.admission_queue is not None and i.admission_queue < 0
            else ""
        ),
        f"spare_threads: {i.spare_threads} must be at least 1" if i.spare_threads < 1 else "",
        (
            f"queue_budget_ms: {i.queue_budget_ms} must be at least 1"
            if i.queue_budget_ms < 1
            else ""
        ),
    ]


def _server_range_problems(i: PlanInputs) -> list[str]:
    """Impossible values among what the database server's side is computed from."""
    return [
        f"db_max_connections: {i.db_max_connections} must be at least 1"
        if i.db_max_connections < 1
        else "",
        (
            f"db_reserved_connections: {i.db_reserved_connections}"
            f" must be from 0 to {i.db_max_connections - 1}"
            if not 0 <= i.db_reserved_connections < i.db_max_connections
            else ""
        ),
    ]


@dataclass(frozen=True)
class ServerLimits:
    """What a PostgreSQL server really allows, as read from it (see `--check-server`)."""

    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int  # PostgreSQL 16+: kept for roles with pg_use_reserved_connections
    connections_in_use: int

    @property
    def open_to_ordinary_roles(self) -> int:
        return (
            self.max_connections - self.superuser_reserved_connections - self.reserved_connections
        )


def server_problems(plan: CapacityPlan, server: ServerLimits) -> list[str]:
    """Why the server cannot carry the plan, whatever the answers assumed; empty when it can."""
    problems = []
    if plan.inputs.db_max_connections > server.max_connections:
        problems.append(
            f"db_max_connections: the plan assumes {plan.inputs.db_max_connections}, but the"
            f" server's max_connections is {server.max_connections}"
        )
    if plan.server_connections > server.open_to_ordinary_roles:
        problems.append(
            f"{_server_side(plan)} exceeds the"
            f" {server.open_to_ordinary_roles} the server opens to ordinary roles (max_connections"
            f" {server.max_connections} - superuser_reserved_connections"
            f" {server.superuser_reserved_connections} - reserved_connections"
            f" {server.reserved_connections})"
        )
    return problems


def server_notes(plan: CapacityPlan, server: ServerLimits) -> list[str]:
    """What is worth knowing but not fatal: connections other clients hold right now."""
    free_now = server.open_to_ordinary_roles - server.connections_in_use
    if plan.server_connections > free_now:
        return [
            f"note: {server.connections_in_use} connections are in use on the server now, leaving"
            f" {free_now}; {_server_side(plan)} needs them released first"
        ]
    return []


def _server_side(plan: CapacityPlan) -> str:
    """What the plan asks of the database server, in words."""
    if plan.inputs.pgbouncer:
        return f"PgBouncer's server pool of {plan.server_connections} connections"
    return f"the plan's peak of {plan.peak_connections} connections"


def format_table(plan: CapacityPlan) -> str:
    """The plan as a Markdown table."""
    header = ("quantity", "value", "derived from")
    rows = [header, *plan.rows()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    # `python -m <package>.capacity`: the command line lives apart, so that importing this
    # module never imports settings, the database driver or the web framework.
    from .capacity_cli import main

    raise SystemExit(main())
