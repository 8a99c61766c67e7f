"""The capacity plan in sentences: why it does not fit, what a worker admits, that it fits.

Apart from the arithmetic (plan.py) so that the numbers read as numbers, and kept word for
word: the generation-time rules say the same refusals, and operators and tests match them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plan.py imports this module to word its problems
    from .plan import CapacityPlan


def over_budget(plan: CapacityPlan) -> str:
    """The service's peak exceeds what its connections meet: PostgreSQL or PgBouncer."""
    i = plan.inputs
    pool = (
        f"the largest pool_size that fits is {plan.largest_pool_size}"
        f" (with max_overflow {i.max_overflow})"
        if plan.largest_pool_size >= 1
        else f"no pool_size fits with max_overflow {i.max_overflow} and {i.workers} workers"
    )
    workers = (
        f"the largest worker count that fits is {plan.largest_workers}"
        if plan.largest_workers >= 1
        else (
            f"no worker count fits with pool_size {i.pool_size} + max_overflow {i.max_overflow}"
            f" on {plan.instances_at_peak} instances"
        )
    )
    fleet = (
        " (replicas + max_surge) x workers x (pool_size + max_overflow)"
        f" = ({i.replicas} + {i.max_surge}) x {i.workers} x ({i.pool_size} + {i.max_overflow})"
    )
    if i.pgbouncer:
        return (
            f"connection budget exceeded at PgBouncer:{fleet}"
            f" = {plan.peak_connections} client connections,"
            f" but pgbouncer_max_client_conn is {i.pgbouncer_max_client_conn};"
            f" {pool}; {workers};"
            f" or raise pgbouncer_max_client_conn to {plan.peak_connections}"
        )
    return (
        f"connection budget exceeded:{fleet}"
        f" = {plan.peak_connections} connections,"
        " but db_max_connections - db_reserved_connections"
        f" = {i.db_max_connections} - {i.db_reserved_connections}"
        f" = {plan.available_connections} are available; {pool}; {workers}"
    )


def over_pgbouncer_pool(plan: CapacityPlan) -> str:
    """PgBouncer's server pool exceeds what PostgreSQL leaves this service."""
    i = plan.inputs
    return (
        "connection budget exceeded behind PgBouncer:"
        f" pgbouncer_pool_size = {i.pgbouncer_pool_size} server connections,"
        " but db_max_connections - db_reserved_connections"
        f" = {i.db_max_connections} - {i.db_reserved_connections}"
        f" = {plan.available_connections} are available;"
        f" the largest pgbouncer_pool_size that fits is {plan.available_connections}"
    )


def does_not_fit(problems: list[str]) -> str:
    """A refusal to serve, on one line: what the entry points print and the lifespan raises."""
    return "capacity plan does not fit: " + "; ".join(problems)


def admission(plan: CapacityPlan) -> str:
    """What one worker admits and how many threads it runs: the startup log's sentence."""
    i = plan.inputs
    return (
        f"serves database requests on {plan.connections_per_worker} connections"
        f" (pool {i.pool_size} + {i.max_overflow} overflow), queues one only while it can expect"
        f" a connection within {i.queue_budget_ms} ms (at most {plan.admission_queue} queued)"
        f" and answers 503 beyond that; {plan.thread_limit} threads"
    )


def plan_fits(plan: CapacityPlan) -> str:
    """That the plan fits, and what is left to spare at peak."""
    if plan.inputs.pgbouncer:
        return (
            f"The plan fits, with {plan.headroom} of PgBouncer's client connections and"
            f" {plan.server_headroom} of PostgreSQL's connections to spare at peak."
        )
    return f"The plan fits, with {plan.headroom} connections of headroom at peak."
