"""The capacity plan: how many connections, threads and requests this service may hold.

By concern: plan.py computes the numbers and whether they fit (pure arithmetic), wording.py
says them in sentences, table.py lays them out as a table, server.py checks them against a
live server's limits, and __main__.py is `python -m <package>.capacity`. Only __main__.py
imports settings or the database: settings.py imports this package, and importing it loads
no web framework, engine or driver.
"""

from .plan import (
    ANYIO_DEFAULT_THREADS,
    DEFAULT_QUEUE_BUDGET_MS,
    DEFAULT_SPARE_THREADS,
    QUEUE_PER_CONNECTION,
    CapacityPlan,
    PlanInputs,
)
from .server import (
    ServerLimits,
    ServerNotCheckedError,
    read_server_limits,
    server_notes,
    server_problems,
)
from .table import format_table, rows

__all__ = [
    "ANYIO_DEFAULT_THREADS",
    "DEFAULT_QUEUE_BUDGET_MS",
    "DEFAULT_SPARE_THREADS",
    "QUEUE_PER_CONNECTION",
    "CapacityPlan",
    "PlanInputs",
    "ServerLimits",
    "ServerNotCheckedError",
    "format_table",
    "read_server_limits",
    "rows",
    "server_notes",
    "server_problems",
]
