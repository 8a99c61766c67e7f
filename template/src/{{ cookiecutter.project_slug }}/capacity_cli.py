"""`python -m {{ cookiecutter.project_slug }}.capacity`: print the capacity plan, exit 1 if it does not fit.

The plan is built from exactly the settings the service would use: the environment over the
defaults. With --check-server it also reads what the PostgreSQL server in DATABASE_URL
really allows and checks the plan against that.
"""

from __future__ import annotations

import argparse
import sys

from .capacity import ServerLimits, format_table, server_notes, server_problems
from .db import query_server
from .settings import Settings

SERVER_SETTINGS_SQL = """
SELECT name, setting::int FROM pg_settings
WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')
"""
CONNECTIONS_IN_USE_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
)


def read_server_limits(settings: Settings) -> ServerLimits:
    values = dict(query_server(settings, SERVER_SETTINGS_SQL))
    [(in_use,)] = query_server(settings, CONNECTIONS_IN_USE_SQL)
    return ServerLimits(
        max_connections=values["max_connections"],
        superuser_reserved_connections=values["superuser_reserved_connections"],
        reserved_connections=values.get("reserved_connections", 0),  # before PostgreSQL 16: none
        connections_in_use=in_use,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m {{ cookiecutter.project_slug }}.capacity", description=__doc__)
    parser.add_argument(
        "--check-server",
        action="store_true",
        help="also check the plan against the limits of the server in DATABASE_URL",
    )
    arguments = parser.parse_args(argv)

    settings = Settings()
    plan = settings.capacity_plan()
    print(format_table(plan))
    problems = settings.plan_problems()
    if arguments.check_server and not problems:
        server = read_server_limits(settings)
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
        return 1
    if plan.inputs.pgbouncer:
        print(
            f"\nThe plan fits, with {plan.headroom} of PgBouncer's client connections and"
            f" {plan.server_headroom} of PostgreSQL's connections to spare at peak."
        )
    else:
        print(f"\nThe plan fits, with {plan.headroom} connections of headroom at peak.")
    return 0
