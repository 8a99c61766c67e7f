"""The capacity plan as a table: each quantity, its value and how it is derived.

`python -m <package>.capacity` prints it, gunicorn's master logs its rows at startup, and
the README shows the same rows for the generated answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import CapacityPlan

Row = tuple[str, str, str]  # quantity, value, how it is derived


def rows(plan: CapacityPlan) -> list[Row]:
    """The plan's rows, in the order of the model: connections, then admission, then threads."""
    i = plan.inputs
    per_worker = plan.connections_per_worker
    threads = (
        f"{per_worker} connections + {i.spare_threads} spare threads"
        if i.driver == "sync"
        else "AnyIO's default; database work stays off it"
    )
    return [
        (
            "connections per worker",
            str(per_worker),
            f"pool_size {i.pool_size} + max_overflow {i.max_overflow}",
        ),
        (
            "connections per instance",
            str(plan.connections_per_instance),
            f"{i.workers} workers x {per_worker}",
        ),
        (
            "steady connections",
            str(plan.steady_connections),
            f"{i.replicas} replicas x {plan.connections_per_instance}",
        ),
        (
            "peak connections",
            str(plan.peak_connections),
            f"({i.replicas} replicas + {i.max_surge} surge) x {plan.connections_per_instance}",
        ),
        *(_pgbouncer_rows(plan) if i.pgbouncer else _direct_rows(plan)),
        (
            "queue budget",
            f"{i.queue_budget_ms} ms",
            "a database request queues only while it can expect a connection within this,"
            " and waits no longer; beyond it: 503",
        ),
        (
            "admission limit per worker",
            str(plan.admission_limit),
            f"{per_worker} connections + at most {plan.admission_queue} queued; beyond it: 503",
        ),
        ("threads per worker", str(plan.thread_limit), threads),
    ]


def _available_row(plan: CapacityPlan) -> Row:
    i = plan.inputs
    return (
        "available connections",
        str(plan.available_connections),
        f"max_connections {i.db_max_connections} - reserved {i.db_reserved_connections}",
    )


def _direct_rows(plan: CapacityPlan) -> list[Row]:
    return [
        _available_row(plan),
        ("headroom at peak", str(plan.headroom), "available - peak; must not be negative"),
    ]


def _pgbouncer_rows(plan: CapacityPlan) -> list[Row]:
    """Both sides of PgBouncer: the service's connections are its clients; PostgreSQL sees
    only its server pool."""
    return [
        ("pgbouncer client limit", str(plan.client_limit), "PgBouncer's max_client_conn"),
        (
            "headroom at peak",
            str(plan.headroom),
            "pgbouncer client limit - peak; must not be negative",
        ),
        (
            "pgbouncer server connections",
            str(plan.server_connections),
            f"pgbouncer_pool_size {plan.inputs.pgbouncer_pool_size}, shared by every client"
            " (transaction pooling)",
        ),
        _available_row(plan),
        (
            "server headroom",
            str(plan.server_headroom),
            "available - pgbouncer server connections; must not be negative",
        ),
    ]


def format_table(plan: CapacityPlan) -> str:
    """The plan as a Markdown table."""
    table = [("quantity", "value", "derived from"), *rows(plan)]
    widths = [max(len(row[column]) for row in table) for column in range(3)]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in table
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)
