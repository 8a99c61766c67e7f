"""Shared fixtures: the throwaway PostgreSQL server, the tools the boot tests need, and the deployment
cases (tests/support/deploy.py) rendered once for the modules that check their files.

The server comes from template/tests/postgres_server.py, the very file every
generated service gets, loaded by path: one source of truth for both.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest

from tests.support.answers import DRIVERS
from tests.support.deploy import Case, Rendered, render_case
from tests.support.generation import template_module
from tests.support.services import ANSWERS, Database, Project, generate_and_install, migrated_database

# The modules that start first, in this order. The suite runs whole modules in parallel, two at
# a time (xdist --dist loadfile --no-loadscope-reorder: in the order collected, which this
# list sets). The modules whose assertions need the CPU they measure on (a closed-loop load
# that must all be served in time) start first, beside the image builds, which mostly wait
# on the network. The longest modules follow, so that none is left alone at the end while the
# other process idles. The benchmark smoke run, which loads both cores, runs last: started
# fifth, it ran beside the overload module whenever that one outlasted the four before it,
# and its load made the sync variant refuse a few of 64 clients.
LONGEST_FIRST = (
    "test_overload_boot.py",
    "test_image.py",
    "test_lifecycle_boot.py",
    "test_boot.py",
    "test_pgbouncer_boot.py",
)
LAST = "test_benchmarks.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        if name == LAST:
            return len(LONGEST_FIRST) + 1
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module, and of the other modules, is kept


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the session; each test makes its own databases."""
    server_module = template_module("tests/postgres_server.py")
    try:
        with server_module.throwaway_postgres(max_connections=100) as server:
            yield server
    except server_module.PostgresUnavailableError as error:  # raised while starting, never by tests
        pytest.fail(f"these tests need PostgreSQL: {error}", pytrace=False)


@pytest.fixture(scope="session")
def uv() -> str:
    """The uv executable, which installs the generated services."""
    found = shutil.which("uv")
    if found is None:
        pytest.fail("these tests need uv to install generated services: `pip install uv`", pytrace=False)
    return found


# One generated, installed project per variant, shared by every boot test module.


@pytest.fixture(scope="session", params=DRIVERS, ids=lambda driver: f"db_driver={driver}")
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, uv: str) -> Project:
    driver = request.param
    return generate_and_install({**ANSWERS, "db_driver": driver}, tmp_path_factory.mktemp(f"boot-{driver}"), uv)


@pytest.fixture(scope="session")
def database(project: Project, postgres: Any) -> Database:
    """A fresh database for the variant, migrated to the latest revision."""
    return migrated_database(project, postgres, f"boot_{project.driver}")


# The deployment cases (tests/support/deploy.py), each rendered once, shared by the deploy-file modules.


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Rendered]:
    @cache
    def rendered(case: Case) -> Rendered:
        return render_case(case, tmp_path_factory.mktemp(case.id))

    return rendered
