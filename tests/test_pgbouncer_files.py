"""PgBouncer's configuration, in every target that runs it: the answers and the plan in
pgbouncer.ini, and the service's URLs through PgBouncer while migrations go to PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.answers import TARGETS
from tests.support.deploy import PGBOUNCER_INI, Case, env_file, pgbouncer_cases


@pytest.mark.parametrize("case", pgbouncer_cases(*TARGETS))
def test_pgbouncer_ini_holds_the_answers_and_the_plan(case: Case, render: Any) -> None:
    project = render(case)
    ini = project.pgbouncer_ini()
    pgbouncer, defaults = ini["pgbouncer"], project.defaults()
    clients, servers = project.number("pgbouncer_max_client_conn"), project.number("pgbouncer_pool_size")

    assert pgbouncer["pool_mode"] == "transaction"
    assert int(pgbouncer["max_client_conn"]) == clients == defaults["PGBOUNCER_MAX_CLIENT_CONN"]
    assert int(pgbouncer["default_pool_size"]) == int(pgbouncer["max_db_connections"]) == servers
    assert servers == defaults["PGBOUNCER_POOL_SIZE"]
    assert int(pgbouncer["reserve_pool_size"]) == 0, "no server connections beyond the plan's"
    assert defaults["PGBOUNCER"] is True
    assert int(pgbouncer["query_wait_timeout"]) == project.number("pool_timeout")
    assert pgbouncer["auth_type"] == "scram-sha-256"

    # The plan for the file's numbers, as the service computes it: the fleet's connections are
    # PgBouncer's clients, and PgBouncer's pool is what PostgreSQL sees. The peak the file's
    # comment shows is the plan's.
    plan = project.plan(
        pgbouncer_max_client_conn=int(pgbouncer["max_client_conn"]),
        pgbouncer_pool_size=int(pgbouncer["max_db_connections"]),
    )
    assert plan.fits, plan.problems()
    comment = (project.path / PGBOUNCER_INI[project.answers["deployment_target"]]).read_text()
    assert f"= {plan.peak_connections} client connections <= max_client_conn {clients}" in comment

    # statement_timeout: the service cannot send it through PgBouncer, so PgBouncer sets it, to
    # the service's own default.
    [database] = ini["databases"].values()
    found = re.search(r"connect_query='SET statement_timeout = (\d+)'", database)
    assert found, database
    assert int(found.group(1)) == round(project.statement_timeout_default() * 1000)


@pytest.mark.parametrize("case", pgbouncer_cases(*TARGETS))
def test_the_service_connects_through_pgbouncer_and_migrates_directly(case: Case, render: Any) -> None:
    project = render(case)
    examples = {
        "docker-compose": ".env.example",
        "kubernetes": "deploy/kubernetes/database.env.example",
        "systemd": f"deploy/systemd/{project.slug}.env.example",
    }
    urls = env_file(project.path / examples[case.target])
    assert urls["DATABASE_URL"].split("@")[1].split("/")[0].endswith(":6432"), "DATABASE_URL names PgBouncer"
    assert urls["DIRECT_DATABASE_URL"].split("@")[1].split("/")[0].endswith(":5432"), "and the direct one PostgreSQL"
