"""The capacity plan enforced by a real service: at startup, against the server, under load.

Per db_driver, a generated service runs under gunicorn with two workers. To make database
requests slow on demand, a test holds an ACCESS EXCLUSIVE lock on the items table: every
query on it then waits, as it would behind a slow migration or a hot row.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.generation import template_module
from tests.services import (
    BUDGET,
    MAX_OVERFLOW,
    POOL_SIZE,
    WORKERS,
    ConnectionWatch,
    Database,
    Gunicorn,
    Project,
    free_port,
    gunicorn,
    run,
    service_env,
)

pytestmark = pytest.mark.boot

capacity = template_module("src/{{ cookiecutter.project_slug }}/capacity.py")
LOCK_SECONDS = 3.0
LOCKER = "headroom-test-locker"  # application_name of the connection that holds the lock


def plan_for(driver: str) -> Any:
    return capacity.CapacityPlan(
        capacity.PlanInputs(
            driver=driver,
            replicas=1,
            max_surge=1,
            workers=WORKERS,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            db_max_connections=100,
            db_reserved_connections=10,
        )
    )


@contextmanager
def items_locked(database_url: str, seconds: float = LOCK_SECONDS) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on items for `seconds` (in a thread), from entering the block."""
    taken = threading.Event()

    def hold() -> None:
        with psycopg.connect(database_url, application_name=LOCKER) as connection:
            connection.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            taken.set()
            time.sleep(seconds)
        # leaving the block commits, which releases the lock

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(10), "could not lock the items table"
    try:
        yield
    finally:
        holder.join()


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None


def concurrently(url: str, path: str, count: int) -> list[Answer]:
    """`count` requests at once, each on its own connection; any transport error fails the test."""

    async def one(client: httpx.AsyncClient) -> Answer:
        started = time.monotonic()
        response = await client.get(path)
        return Answer(response.status_code, time.monotonic() - started, response.headers.get("Retry-After"))

    async def all_of_them() -> list[Answer]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(count)))

    return asyncio.run(all_of_them())


@pytest.fixture(scope="module")
def item_path(project: Project, database: Database) -> str:
    with gunicorn(project, database.url, workers=1) as server:
        created = httpx.post(f"{server.url}/items", json={"name": "contended"}, timeout=30)
    assert created.status_code == 201, created.text
    return f"/items/{created.json()['id']}"


def attempt(command: list[str], project: Project, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command of the service's that may fail; its exit code and output, for the test to judge."""
    return subprocess.run(command, cwd=project.path, env=env, capture_output=True, text=True, timeout=60, check=False)


# At startup


OVER_BUDGET = {"WEB_CONCURRENCY": "8", "DB_POOL_SIZE": "20"}


def test_settings_over_budget_stop_gunicorn_with_the_numbers(project: Project, database: Database) -> None:
    env = service_env(DATABASE_URL=database.url, PORT=str(free_port()), **OVER_BUDGET)
    started = attempt([project.bin("gunicorn"), "-c", "gunicorn.conf.py"], project, env)
    assert started.returncode != 0
    explanation = "(1 + 1) x 8 x (20 + 2) = 352 connections"
    assert explanation in started.stderr
    assert "WEB_CONCURRENCY=8, DB_POOL_SIZE=20" in started.stderr

    planned = attempt([project.bin("python"), "-m", "boot_check.capacity"], project, env)
    assert planned.returncode == 1
    assert explanation in planned.stderr


def test_the_server_check_refuses_a_plan_the_answers_accept(project: Project) -> None:
    server_module = template_module("tests/postgres_server.py")
    with server_module.throwaway_postgres(max_connections=15) as small:
        env = service_env(DATABASE_URL=small.url())
        assert run([project.bin("python"), "-m", "boot_check.capacity"], cwd=project.path, env=env)
        checked = attempt([project.bin("python"), "-m", "boot_check.capacity", "--check-server"], project, env)
    assert checked.returncode == 1, checked.stdout
    assert "the server's max_connections is 15" in checked.stderr
    assert f"the plan's peak of {2 * BUDGET} connections exceeds the 12 the server opens" in checked.stderr


# Under load


@pytest.fixture(scope="module")
def service(project: Project, database: Database) -> Iterator[Gunicorn]:
    with gunicorn(project, database.url) as server:
        yield server


def test_every_worker_runs_with_the_limits_of_the_plan(service: Gunicorn, project: Project) -> None:
    plan = plan_for(project.driver)
    started = re.findall(r"worker (\d+): admission limit (\d+), thread limit (\d+)", service.output())
    assert len({pid for pid, _, _ in started}) == WORKERS, service.output()
    assert {(int(admission), int(threads)) for _, admission, threads in started} == {
        (plan.admission_limit, plan.thread_limit)
    }
    # And live, from whichever workers answer: the limits in force, not only the ones logged.
    answers = [httpx.get(f"{service.url}/capacity", timeout=10).json() for _ in range(5)]
    for answer in answers:
        assert answer["admission"] == {"limit": plan.admission_limit, "in_use": 0}
        assert answer["threads"]["limit"] == plan.thread_limit
        assert answer["peak_connections"] == plan.peak_connections


def test_ten_times_the_admission_limit_gets_200_or_a_fast_503(
    service: Gunicorn, project: Project, database: Database, postgres: Any, item_path: str
) -> None:
    plan = plan_for(project.driver)
    admitted_at_most = WORKERS * plan.admission_limit
    side_answers: dict[str, list[int]] = {"/healthz": [], "/capacity": []}

    def probe_while_loaded() -> None:
        time.sleep(0.5)  # once the load has filled the workers
        with httpx.Client(base_url=service.url, timeout=5) as client:
            for path, statuses in side_answers.items():
                statuses.append(client.get(path).status_code)

    prober = threading.Thread(target=probe_while_loaded)
    with ConnectionWatch(postgres.url(), database.name) as watch, items_locked(database.url):
        prober.start()
        answers = concurrently(service.url, item_path, count=10 * admitted_at_most)
        prober.join()

    statuses = sorted({answer.status for answer in answers})
    assert set(statuses) <= {200, 503}, statuses
    served = [answer for answer in answers if answer.status == 200]
    refused = [answer for answer in answers if answer.status == 503]
    assert 0 < len(served) <= admitted_at_most
    assert len(refused) >= 9 * admitted_at_most
    assert all(answer.retry_after == "1" for answer in refused)
    # Refusals do not wait for the lock, served requests do. (Absolute times mostly measure
    # this client opening hundreds of connections at once on a small machine.)
    assert max(answer.seconds for answer in refused) < min(answer.seconds for answer in served)
    assert statistics.median(answer.seconds for answer in refused) < LOCK_SECONDS / 2
    assert side_answers == {"/healthz": [200], "/capacity": [200]}, "answers beside the load"
    # The service's connections, plus the one holding the lock.
    assert watch.peak <= BUDGET + 1, f"peak {watch.peak} connections; the budget is {BUDGET}"


def test_a_pool_timeout_is_a_503_not_a_500(project: Project, database: Database, item_path: str) -> None:
    with gunicorn(project, database.url, workers=1, DB_POOL_TIMEOUT="1") as server, items_locked(database.url):
        answers = concurrently(server.url, item_path, count=POOL_SIZE + MAX_OVERFLOW + 2)
    timed_out = [answer for answer in answers if answer.status == 503]
    assert {answer.status for answer in answers} == {200, 503}
    assert all(answer.retry_after == "1" for answer in timed_out)
    assert all(answer.seconds < LOCK_SECONDS for answer in timed_out)


def test_a_request_past_its_deadline_is_a_504(project: Project, database: Database, item_path: str) -> None:
    deadlines = {"REQUEST_TIMEOUT": "1", "STATEMENT_TIMEOUT": "1"}
    with gunicorn(project, database.url, workers=1, **deadlines) as server, items_locked(database.url):
        started = time.monotonic()
        answer = httpx.get(f"{server.url}{item_path}", timeout=30)
        waited = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert waited < LOCK_SECONDS


@pytest.mark.parametrize("cpus", ["0", "0,1"], ids=lambda cpus: f"taskset={cpus}")
def test_auto_workers_follow_the_cpus_the_service_may_use(project: Project, database: Database, cpus: str) -> None:
    # gunicorn itself cannot read WEB_CONCURRENCY=auto: `python -m <package>` resolves it, then runs gunicorn.
    env = service_env(DATABASE_URL=database.url, WEB_CONCURRENCY="auto")
    shown = run(
        ["taskset", "-c", cpus, project.bin("python"), "-m", "boot_check", "--print-config"],
        cwd=project.path,
        env=env,
    )
    allowed = len(cpus.split(","))
    quota = template_module("src/{{ cookiecutter.project_slug }}/cpus.py").cgroup_cpu_quota()
    expected = allowed if quota is None else max(1, min(allowed, math.ceil(quota)))
    assert re.search(rf"^workers\s*=\s*{expected}$", shown, re.MULTILINE), shown
