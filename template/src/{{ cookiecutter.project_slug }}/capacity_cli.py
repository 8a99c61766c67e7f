"""`python -m {{ cookiecutter.project_slug }}.capacity`: print the capacity plan and say whether it fits.

The plan is built from exactly the settings the service would use: the environment over the
defaults. It needs no DATABASE_URL. With --check-server it also reads what the PostgreSQL
server in DATABASE_URL really allows and checks the plan against that.

Exit status: 0 the plan fits; 1 it does not (the numbers are on stderr); 2 a setting or an
argument is bad (one line names it); 3 the server could not be checked (one line names the
server and why).
"""

from __future__ import annotations

import argparse
import sys

from .capacity import ServerLimits, format_table, server_notes, server_problems
from .db import query_server
from .settings import (
    BAD_SETTINGS,
    PLAN_DOES_NOT_FIT,
    PlanSettings,
    Settings,
    SettingsError,
    load_settings,
)

SERVER_NOT_CHECKED = 3
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


class ServerNotCheckedError(RuntimeError):
    """The server in DATABASE_URL did not tell its limits; the message says which and why."""


def read_server_limits(settings: Settings) -> ServerLimits:
    """The server's connection limits, or ServerNotCheckedError naming it (password masked)."""
    quick = settings.model_copy(
        update={"db_pool_timeout": min(settings.db_pool_timeout, CHECK_TIMEOUT)}
    )
    # Whatever fails on the way to an answer (the name does not resolve, nothing listens, no
    # answer in time, authentication, a missing database) means the same to the operator, and
    # the drivers raise it in types of their own that SQLAlchemy does not always wrap.
    try:
        values = dict(query_server(quick, SERVER_SETTINGS_SQL))
        [(in_use,)] = query_server(quick, CONNECTIONS_IN_USE_SQL)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.project_slug }}.capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check-server",
        action="store_true",
        help="also check the plan against the limits of the server in DATABASE_URL",
    )
    arguments = parser.parse_args(argv)  # exits 2 on a bad argument, as BAD_SETTINGS

    try:
        settings = load_settings(Settings if arguments.check_server else PlanSettings)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return BAD_SETTINGS
    plan = settings.capacity_plan()
    print(format_table(plan))
    problems = settings.plan_problems()
    if isinstance(settings, Settings) and not problems:
        try:
            server = read_server_limits(settings)
        except ServerNotCheckedError as error:
            print(error, file=sys.stderr)
            return SERVER_NOT_CHECKED
        print(
            f"\nserver {settings.safe_database_url}: max_connections {server.max_connections},"
            f" superuser_reserved_connections {server.superuser_reserved_connections},"
            f" reserved_connections {server.reserved_connections},"
            f" {server.connections_in_use} connections in use"
        )
        problems = server_problems(plan, server)
        for note in server_notes(plan, server):
            print(note)
    if problems:
        print("\nThe plan does not fit:", *problems, sep="\n  ", file=sys.stderr)
        return PLAN_DOES_NOT_FIT
    if plan.inputs.pgbouncer:
        print(
            f"\nThe plan fits, with {plan.headroom} of PgBouncer's client connections and"
            f" {plan.server_headroom} of PostgreSQL's connections to spare at peak."
        )
    else:
        print(f"\nThe plan fits, with {plan.headroom} connections of headroom at peak.")
    return 0
