"""Each db_driver variant, generated, installed and booted for real against PostgreSQL.

Per variant: copier generates the service, uv installs it into a fresh virtual
environment, alembic migrates a fresh database, and `gunicorn -c gunicorn.conf.py`
serves it with two workers as a real process. The tests then talk HTTP to it,
watch its connections in pg_stat_activity, stop it with SIGTERM, and run the
generated project's own test suite.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.processes import free_port, wait_until
from tests.support.services import (
    BUDGET,
    MISSING_ID,
    POOL_SIZE,
    WORKERS,
    ConnectionWatch,
    Database,
    Gunicorn,
    Project,
    gunicorn,
    migrated_database,
    run,
    service_env,
)

pytestmark = pytest.mark.boot


def graceful_timeout(project: Project, database: Database) -> float:
    """graceful_timeout as gunicorn resolves it from the generated gunicorn.conf.py."""
    printed = run(
        [project.bin("gunicorn"), "-c", "gunicorn.conf.py", "--print-config"],
        cwd=project.path,
        env=service_env(DATABASE_URL=database.url),
    )
    found = re.search(r"^graceful_timeout\s*=\s*(\d+(?:\.\d+)?)\s*$", printed, re.MULTILINE)
    assert found, f"gunicorn --print-config shows no graceful_timeout:\n{printed}"
    return float(found.group(1))


def hammer(url: str, requests: int = 200, concurrency: int = 50) -> Counter[int]:
    """Many concurrent requests, mostly reads, some writes; the status codes they got."""

    async def one(client: httpx.AsyncClient, number: int) -> int:
        kind = number % 10
        if kind == 0:
            response = await client.post("/items", json={"name": f"load {number}"})
        elif kind == 1:
            response = await client.get("/readyz")
        elif kind == 2:
            response = await client.get(f"/items/{number}")
        else:
            response = await client.get("/items", params={"limit": 50})
        return response.status_code

    async def all_of_them() -> Counter[int]:
        # Idle connections expire well before the server's keep-alive timeout, or the server may
        # close one just as a request goes out on it (a ReadError that says nothing of the service).
        limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=1)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return Counter(await asyncio.gather(*(one(client, number) for number in range(requests))))

    return asyncio.run(all_of_them())


@pytest.fixture(scope="module")
def service(project: Project, database: Database) -> Iterator[Gunicorn]:
    with gunicorn(project, database.url) as server:
        yield server


@pytest.fixture
def client(service: Gunicorn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


# The service over HTTP


def test_items_can_be_created_read_listed_updated_and_deleted(client: httpx.Client) -> None:
    created = client.post("/items", json={"name": "first", "description": "made by the boot test"})
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["name"] == "first"
    assert first["description"] == "made by the boot test"
    second = client.post("/items", json={"name": "second"}).json()

    fetched = client.get(f"/items/{first['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == first

    listed = client.get("/items", params={"limit": 100})
    assert listed.status_code == 200
    ids = [item["id"] for item in listed.json()]
    assert ids == sorted(ids)
    assert first["id"] in ids
    assert second["id"] in ids
    at = ids.index(first["id"])
    paged = client.get("/items", params={"limit": 2, "offset": at}).json()
    assert [item["id"] for item in paged] == ids[at : at + 2]

    patched = client.patch(f"/items/{first['id']}", json={"description": "changed"})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**first, "description": "changed"}
    assert client.get(f"/items/{first['id']}").json()["description"] == "changed"

    deleted = client.delete(f"/items/{first['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/items/{first['id']}").status_code == 404


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"], ids=lambda method: f"method={method}")
def test_a_missing_item_is_404(client: httpx.Client, method: str) -> None:
    body = {"json": {"name": "x"}} if method == "PATCH" else {}
    assert client.request(method, f"/items/{MISSING_ID}", **body).status_code == 404


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1_000_000}, {"limit": -1}, {"offset": -1}, {"limit": "many"}],
    ids=lambda params: ",".join(f"{key}={value}" for key, value in params.items()),
)
def test_a_list_out_of_bounds_is_422(client: httpx.Client, params: dict[str, Any]) -> None:
    assert client.get("/items", params=params).status_code == 422


BAD_BODIES = [
    pytest.param("POST", {}, id="POST-no-name"),
    pytest.param("POST", {"name": ""}, id="POST-empty-name"),
    pytest.param("POST", {"name": 42}, id="POST-name-not-text"),
    pytest.param("POST", {"name": "x", "colour": "red"}, id="POST-unknown-field"),
    pytest.param("POST", b"{not json", id="POST-not-json"),
    pytest.param("PATCH", {"name": None}, id="PATCH-null-name"),
    pytest.param("PATCH", {"colour": "red"}, id="PATCH-unknown-field"),
]


@pytest.mark.parametrize(("method", "body"), BAD_BODIES)
def test_a_bad_body_is_422(client: httpx.Client, method: str, body: dict[str, Any] | bytes) -> None:
    target = "/items"
    if method == "PATCH":
        target = f"/items/{client.post('/items', json={'name': 'to patch'}).json()['id']}"
    if isinstance(body, bytes):
        response = client.request(method, target, content=body, headers={"content-type": "application/json"})
    else:
        response = client.request(method, target, json=body)
    assert response.status_code == 422, response.text


def test_probes_answer_200_when_the_database_is_up(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


# The connection budget under load


def test_connections_never_exceed_workers_times_pool_under_load(
    service: Gunicorn, database: Database, postgres: Any
) -> None:
    with ConnectionWatch(postgres.url(), database.name) as watch:
        statuses = hammer(service.url)

    assert set(statuses) <= {200, 201, 404, 503}, f"unexpected answers under load: {statuses}"
    assert statuses[200] + statuses[201] > 0, statuses
    assert 0 < watch.peak <= BUDGET, f"peak {watch.peak} connections; the budget is {BUDGET}"
    # Overflow connections close when they are returned: at rest, only the pools stay open.
    wait_until(lambda: watch.now() <= WORKERS * POOL_SIZE, timeout=5)
    assert watch.now() <= WORKERS * POOL_SIZE


# Pooled connections that died (a database restart, a failover, an admin's pg_terminate_backend)


@pytest.fixture(scope="module")
def idle_threshold(project: Project) -> float:
    """How long a pooled connection must sit idle before it is pinged: the service's own constant."""
    code = "from boot_check.idle_ping import PING_AFTER_IDLE; print(PING_AFTER_IDLE)"
    return float(run([project.bin("python"), "-c", code], cwd=project.path))


@pytest.fixture(scope="module")
def doomed_database(project: Project, postgres: Any) -> Database:
    """A database of its own: these tests kill its connections, which must not hit another test's service."""
    return migrated_database(project, postgres, f"doomed_{project.driver}")


def terminate_backends(admin_url: str, database: str) -> int:
    """Kill every server process of the database, as a restart would; how many there were.

    The timeout makes pg_terminate_backend wait until each process has exited, not only signal it.
    """
    query = (
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(admin_url, autocommit=True) as connection:
        killed = connection.execute(query, (database,)).fetchall()
    assert all(done for (done,) in killed), f"some backends of {database} outlived pg_terminate_backend"
    return len(killed)


def an_item(client: httpx.Client) -> str:
    created = client.post("/items", json={"name": "outlives its connections"})
    assert created.status_code == 201, created.text
    return f"/items/{created.json()['id']}"


def test_a_pooled_connection_killed_while_idle_is_pinged_and_replaced(
    project: Project, doomed_database: Database, postgres: Any, idle_threshold: float
) -> None:
    with (
        gunicorn(project, doomed_database.url, workers=1) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        path = an_item(client)
        assert client.get(path).status_code == 200  # the pool holds a connection now
        assert terminate_backends(postgres.url(), doomed_database.name) >= 1
        time.sleep(idle_threshold + 0.5)

        again = client.get(path)
    assert again.status_code == 200, f"{again.status_code} {again.text}\n{server.output()}"
    assert "an idle pooled connection did not answer its ping; replacing it" in server.output()
    assert "Traceback" not in server.output()


def test_a_pooled_connection_killed_just_after_use_costs_its_request_a_503(
    project: Project, doomed_database: Database, postgres: Any, idle_threshold: float
) -> None:
    """Not idle long enough to be pinged: its query fails, and the request gets 503 with Retry-After,
    not 500. SQLAlchemy then replaces the pool's connections, so the next request gets a new one."""
    with (
        gunicorn(project, doomed_database.url, workers=1) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        path = an_item(client)
        for attempt in range(3):
            if attempt:  # too slow: let the ping replace the dead connection, and try again
                time.sleep(idle_threshold + 0.5)
            assert client.get(path).status_code == 200
            returned = time.monotonic()
            assert terminate_backends(postgres.url(), doomed_database.name) >= 1
            if time.monotonic() - returned < idle_threshold / 2:
                break
        else:
            pytest.fail(f"could not kill the connection within {idle_threshold / 2} s of its last use")
        first = client.get(path)
        second = client.get(path)
    assert first.status_code == 503, f"{first.status_code} {first.text}\n{server.output()}"
    assert first.headers["Retry-After"] == "1"
    assert second.status_code == 200, f"{second.status_code} {second.text}\n{server.output()}"
    assert "Traceback" not in server.output()


# Readiness without a database, and shutdown


def test_an_unreachable_database_is_503_never_500(project: Project) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with gunicorn(project, nowhere, workers=1) as server:
        healthz = httpx.get(f"{server.url}/healthz", timeout=30)
        readyz = httpx.get(f"{server.url}/readyz", timeout=30)
        item = httpx.get(f"{server.url}/items/1", timeout=30)
        created = httpx.post(f"{server.url}/items", json={"name": "lost"}, timeout=30)
    assert healthz.status_code == 200
    assert readyz.status_code == 503, readyz.text
    for answer in (item, created):
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"


def test_sigterm_stops_gunicorn_cleanly_within_graceful_timeout(project: Project, database: Database) -> None:
    grace = graceful_timeout(project, database)
    with gunicorn(project, database.url) as server:
        for _ in range(10):  # every worker opens its pool
            assert httpx.get(f"{server.url}/items", timeout=30).status_code == 200
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn still running {grace} s after SIGTERM:\n{server.output()}")
        stopped_after = time.monotonic() - started
    assert code == 0, f"gunicorn exited with {code} after SIGTERM:\n{server.output()}"
    assert stopped_after <= grace
    assert "Traceback" not in server.output()


# The generated project's own tests


def test_the_generated_test_suite_passes_against_the_database_of_database_url(project: Project, postgres: Any) -> None:
    """With DATABASE_URL set, the suite uses that database. (Its own throwaway server, and the
    strict type check, run as the project's CI workflow runs them: tests/test_project_ci.py.)"""
    env = service_env(DATABASE_URL=postgres.create_database(f"suite_{project.driver}"))
    run([project.bin("pytest"), "-q", "-p", "no:cacheprovider"], cwd=project.path, env=env, timeout=600)
