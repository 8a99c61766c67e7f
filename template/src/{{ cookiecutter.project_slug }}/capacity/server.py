"""`--check-server`: what a live PostgreSQL server allows, and whether the plan fits it.

The answers assume a max_connections; the server in DATABASE_URL has its own, and reserves
some of it. This module reads those limits and compares. It is handed the function that runs
a query (db.query_server) rather than importing db.py, so that the package stays importable
without the driver, the engine or the web framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..settings import Settings
    from .plan import CapacityPlan

# Seconds the server check waits to connect: an operator's command, not a request that must
# outwait a busy pool, so it gives up sooner than DB_POOL_TIMEOUT would.
CHECK_TIMEOUT = 5.0

SERVER_SETTINGS_SQL = """
SELECT name, setting::int FROM pg_settings
WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')
"""
CONNECTIONS_IN_USE_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
)


@dataclass(frozen=True)
class ServerLimits:
    """What a PostgreSQL server really allows, as read from it."""

    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int  # PostgreSQL 16+: kept for roles with pg_use_reserved_connections
    connections_in_use: int

    @property
    def open_to_ordinary_roles(self) -> int:
        return (
            self.max_connections - self.superuser_reserved_connections - self.reserved_connections
        )

    def describe(self, where: str) -> str:
        """The limits on one line, for the operator who asked."""
        return (
            f"server {where}: max_connections {self.max_connections},"
            f" superuser_reserved_connections {self.superuser_reserved_connections},"
            f" reserved_connections {self.reserved_connections},"
            f" {self.connections_in_use} connections in use"
        )


class ServerNotCheckedError(RuntimeError):
    """The server in DATABASE_URL did not tell its limits; the message says which and why."""


def read_server_limits(
    settings: Settings, query: Callable[[Settings, str], list[tuple[Any, ...]]]
) -> ServerLimits:
    """The server's connection limits, or ServerNotCheckedError naming it (password masked)."""
    quick = settings.model_copy(
        update={"db_pool_timeout": min(settings.db_pool_timeout, CHECK_TIMEOUT)}
    )
    # Whatever fails on the way to an answer (the name does not resolve, nothing listens, no
    # answer in time, authentication, a missing database) means the same to the operator, and
    # the drivers raise it in types of their own that SQLAlchemy does not always wrap.
    try:
        values = dict(query(quick, SERVER_SETTINGS_SQL))
        [(in_use,)] = query(quick, CONNECTIONS_IN_USE_SQL)
    except Exception as error:
        raise ServerNotCheckedError(
            f"could not check the server {settings.safe_database_url}: {reason(error, quick)}"
        ) from None
    return ServerLimits(
        max_connections=values["max_connections"],
        superuser_reserved_connections=values["superuser_reserved_connections"],
        reserved_connections=values.get("reserved_connections", 0),  # before PostgreSQL 16: none
        connections_in_use=in_use,
    )


def reason(error: BaseException, settings: Settings) -> str:
    """The driver's own words, on one line: SQLAlchemy's wrapper adds SQL and a link."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, TimeoutError):
        return f"no answer within {settings.db_pool_timeout:g} s"
    words = " ".join(str(original).split())
    return f"{type(original).__name__}: {words}" if words else type(original).__name__


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
