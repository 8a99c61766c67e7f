"""The capacity plan enforced by a real service: at startup, against the server, under load.

Per db_driver, a generated service runs under gunicorn with two workers. To make database
requests slow on demand, a test holds an ACCESS EXCLUSIVE lock on the items table: every
query on it then waits, as it would behind a slow migration or a hot row.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.generation import capacity_package, plan_inputs, template_module
from tests.support.load import concurrently
from tests.support.processes import free_port
from tests.support.services import (
    BUDGET,
    MAX_OVERFLOW,
    POOL_SIZE,
    WORKERS,
    ConnectionWatch,
    Database,
    Gunicorn,
    Project,
    gunicorn,
    item_paths,
    items_locked,
    run,
    service_env,
)

pytestmark = pytest.mark.boot

capacity = capacity_package()
LOCK_SECONDS = 3.0


def plan_for(driver: str) -> Any:
    return capacity.CapacityPlan(
        plan_inputs(
            {
                "db_driver": driver,
                "replicas": 1,
                "max_surge": 1,
                "workers": WORKERS,
                "pool_size": POOL_SIZE,
                "max_overflow": MAX_OVERFLOW,
                "db_max_connections": 100,
                "db_reserved_connections": 10,
            }
        )
    )


@pytest.fixture(scope="module")
def item_path(database: Database) -> str:
    [path] = item_paths(database, ["contended"])
    return path


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
    started = re.findall(
        r"worker (\d+): serves database requests on (\d+) connections .* within (\d+) ms"
        r" \(at most (\d+) queued\) and answers 503 beyond that; (\d+) threads",
        service.output(),
    )
    assert len({pid for pid, *_ in started}) == WORKERS, service.output()
    assert {tuple(int(number) for number in numbers) for _, *numbers in started} == {
        (plan.connections_per_worker, plan.inputs.queue_budget_ms, plan.admission_queue, plan.thread_limit)
    }
    # And live, from whichever workers answer: the limits in force, not only the ones logged.
    answers = [httpx.get(f"{service.url}/capacity", timeout=10).json() for _ in range(5)]
    for answer in answers:
        admission = answer["admission"]
        assert admission["limit"] == plan.admission_limit
        assert admission["connections"] == plan.connections_per_worker
        assert admission["queue_limit"] == plan.admission_queue
        assert admission["queue_budget_ms"] == plan.inputs.queue_budget_ms
        assert (admission["in_use"], admission["queued"]) == (0, 0)
        assert answer["threads"]["limit"] == plan.thread_limit
        assert answer["peak_connections"] == plan.peak_connections


WRK_STATUSES = """
local paths = PATHS
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function request() return wrk.format("GET", paths[math.random(#paths)]) end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      table.insert(parts, string.format('"%d": %d', status, count))
    end
  end
  local e = summary.errors
  io.write(string.format('RESULT {"statuses": {%s}, "socket_errors": %d}\\n',
    table.concat(parts, ", "), e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_statuses(url: str, paths: list[str], connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Closed-loop keep-alive load from wrk: the count of each status, and socket errors."""
    wrk = shutil.which("wrk")
    assert wrk, "this test loads the service with wrk (apt-get install wrk)"
    script = workdir / f"statuses-{connections}.lua"
    script.write_text(WRK_STATUSES.replace("PATHS", "{" + ", ".join(f'"{path}"' for path in paths) + "}", 1))
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    [result] = [line.removeprefix("RESULT ") for line in output.splitlines() if line.startswith("RESULT ")]
    parsed: dict[str, Any] = json.loads(result)
    return parsed


# The default answers' pool: 2 workers, 10 connections each, no overflow.
DEFAULT_POOL = {"DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "0"}


@pytest.fixture(scope="module")
def fast_item_paths(database: Database) -> list[str]:
    return item_paths(database, [f"item {number}" for number in range(50)])


def test_64_clients_on_a_fast_query_are_all_served(
    project: Project, database: Database, postgres: Any, fast_item_paths: list[str], tmp_path: Path
) -> None:
    """Within what the pool serves in time, nothing is refused, whichever worker the kernel
    gives the connections to, and the connections stay within the plan."""
    with (
        gunicorn(project, database.url, **DEFAULT_POOL) as server,
        ConnectionWatch(postgres.url(), database.name) as watch,
    ):
        result = wrk_statuses(server.url, fast_item_paths, connections=64, seconds=4, workdir=tmp_path)
    assert result["socket_errors"] == 0, result
    assert set(result["statuses"]) == {"200"}, result
    assert result["statuses"]["200"] > 500, result
    assert watch.peak <= WORKERS * 10, f"peak {watch.peak} connections; the plan allows {WORKERS * 10}"


def test_connections_concentrated_on_one_worker_are_all_served(
    project: Project, database: Database, fast_item_paths: list[str], tmp_path: Path
) -> None:
    """The worst case of the kernel's choice: every keep-alive connection on one worker. Below
    what that worker's pool serves within the budget, none is refused."""
    with gunicorn(project, database.url, workers=1, **DEFAULT_POOL) as server:
        result = wrk_statuses(server.url, fast_item_paths, connections=64, seconds=4, workdir=tmp_path)
        capacity = httpx.get(f"{server.url}/capacity", timeout=10).json()
    assert result["socket_errors"] == 0, result
    assert set(result["statuses"]) == {"200"}, result
    assert capacity["admission"]["refused"] == 0, capacity


def test_requests_that_cannot_get_a_connection_within_the_budget_get_a_503(
    service: Gunicorn, project: Project, database: Database, postgres: Any, item_path: str
) -> None:
    """With the table locked every admitted request holds its connection: the rest wait at most
    the queue budget, or are refused at once, with a 503 and Retry-After. Once the lock is gone
    everything is served again and the pool is idle."""
    plan = plan_for(project.driver)
    budget = plan.queue_budget
    served_at_most = WORKERS * plan.connections_per_worker
    side_answers: dict[str, list[int]] = {"/healthz": [], "/capacity": []}

    def probe_while_loaded() -> None:
        time.sleep(0.5)  # once the load has filled the workers
        with httpx.Client(base_url=service.url, timeout=5) as client:
            for path, statuses in side_answers.items():
                statuses.append(client.get(path).status_code)

    prober = threading.Thread(target=probe_while_loaded)
    with ConnectionWatch(postgres.url(), database.name) as watch, items_locked(database.url, LOCK_SECONDS):
        prober.start()
        answers = concurrently(service.url, item_path, count=10 * served_at_most)
        prober.join()

    statuses = sorted({answer.status for answer in answers})
    assert set(statuses) <= {200, 503}, statuses
    served = [answer for answer in answers if answer.status == 200]
    refused = [answer for answer in answers if answer.status == 503]
    assert 0 < len(served) <= served_at_most
    assert len(refused) >= 9 * served_at_most
    assert all(answer.retry_after == "1" for answer in refused)
    # Refusals do not wait for the lock, served requests do; none waits much past the budget.
    # (The margin is for this client opening hundreds of connections at once on a small machine.)
    assert max(answer.seconds for answer in refused) < min(answer.seconds for answer in served)
    assert statistics.median(answer.seconds for answer in refused) < budget + LOCK_SECONDS / 3
    assert side_answers == {"/healthz": [200], "/capacity": [200]}, "answers beside the load"
    # The service's connections, plus the one holding the lock.
    assert watch.peak <= BUDGET + 1, f"peak {watch.peak} connections; the budget is {BUDGET}"

    after = concurrently(service.url, item_path, count=served_at_most)
    assert {answer.status for answer in after} == {200}
    for _ in range(5):
        admission = httpx.get(f"{service.url}/capacity", timeout=10).json()["admission"]
        assert (admission["in_use"], admission["queued"]) == (0, 0), admission


def test_a_request_past_its_deadline_is_a_504(project: Project, database: Database, item_path: str) -> None:
    deadlines = {"REQUEST_TIMEOUT": "1", "STATEMENT_TIMEOUT": "1"}
    with gunicorn(project, database.url, workers=1, **deadlines) as server, items_locked(database.url, LOCK_SECONDS):
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
