"""Each db_driver variant, generated, installed and booted for real against PostgreSQL.

Per variant: copier generates the service, uv installs it into a fresh virtual
environment, alembic migrates a fresh database, and `gunicorn -c gunicorn.conf.py`
serves it with two workers as a real process. The tests then talk HTTP to it,
watch its connections in pg_stat_activity, stop it with SIGTERM, and run the
generated project's own test suite.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.generation import generate

pytestmark = pytest.mark.boot

DRIVERS = ("async", "sync")
WORKERS = 2
POOL_SIZE = 3
MAX_OVERFLOW = 2
# Not the defaults, so the budget checked below is the one the answers set.
ANSWERS = {"project_name": "Boot Check", "workers": WORKERS, "pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
BUDGET = WORKERS * (POOL_SIZE + MAX_OVERFLOW)  # connections one instance may ever hold
STARTUP_TIMEOUT = 30  # seconds for gunicorn to answer /healthz
MISSING_ID = 2**62  # a valid bigint no test creates

# The service's environment is the test's own, minus anything that would steer it.
STEERING = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "DATABASE_URL",
    "PORT",
    "WEB_CONCURRENCY",
    "GRACEFUL_TIMEOUT",
    "GUNICORN_CMD_ARGS",
)


@dataclass(frozen=True)
class Project:
    """A generated service installed in its own .venv."""

    path: Path
    driver: str

    def bin(self, name: str) -> str:
        return str(self.path / ".venv" / "bin" / name)


@dataclass(frozen=True)
class Database:
    name: str
    url: str


@dataclass(frozen=True)
class Gunicorn:
    """A running `gunicorn -c gunicorn.conf.py` and where it logs."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# Helpers


def service_env(**overrides: str) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if key not in STEERING and not key.startswith("DB_")}
    return {**inherited, **overrides}


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env or service_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"`{shlex.join(command)}` failed with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


@contextmanager
def gunicorn(project: Project, database_url: str, workers: int = WORKERS, **settings: str) -> Iterator[Gunicorn]:
    """Serve the project on a free port until the block ends (SIGTERM, then SIGKILL if it must)."""
    port = free_port()
    log = project.path.parent / f"gunicorn-{port}.log"
    env = service_env(DATABASE_URL=database_url, WEB_CONCURRENCY=str(workers), PORT=str(port), **settings)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [project.bin("gunicorn"), "-c", "gunicorn.conf.py"],
            cwd=project.path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_healthy(server: Gunicorn) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.process.returncode} at startup:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer /healthz within {STARTUP_TIMEOUT} s:\n{server.output()}")


class ConnectionWatch:
    """Samples how many connections a database has in pg_stat_activity, in a thread."""

    QUERY = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin_url = admin_url
        self.database = database
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> int:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            row = connection.execute(self.QUERY, (self.database,)).fetchone()
        assert row is not None
        return int(row[0])

    def _sample(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            while not self._stop.is_set():
                row = connection.execute(self.QUERY, (self.database,)).fetchone()
                assert row is not None
                self.samples.append(int(row[0]))
                time.sleep(0.005)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


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


# Fixtures: one generated, installed project per variant, and one running service on it.


@pytest.fixture(scope="module", params=DRIVERS, ids=lambda driver: f"db_driver={driver}")
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, uv: str) -> Project:
    driver = request.param
    generated = generate("copier", {**ANSWERS, "db_driver": driver}, tmp_path_factory.mktemp(f"boot-{driver}"))
    assert generated.project is not None, generated.error
    env = service_env(UV_PYTHON_DOWNLOADS="never")
    run([uv, "venv", "--quiet", "--python", sys.executable, ".venv"], cwd=generated.project, env=env)
    # Compiled now, or every gunicorn worker compiles its imports again (PYTHONDONTWRITEBYTECODE).
    install = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", ".venv/bin/python", "-e", ".[test]"]
    run(install, cwd=generated.project, env=env)
    return Project(generated.project, driver)


@pytest.fixture(scope="module")
def database(project: Project, postgres: Any) -> Database:
    """A fresh database for the variant, migrated to the latest revision."""
    name = f"boot_{project.driver}"
    database = Database(name, postgres.create_database(name))
    run([project.bin("alembic"), "upgrade", "head"], cwd=project.path, env=service_env(DATABASE_URL=database.url))
    return database


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
    deadline = time.monotonic() + 5
    while watch.now() > WORKERS * POOL_SIZE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert watch.now() <= WORKERS * POOL_SIZE


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


@pytest.mark.parametrize("postgres_for_tests", ["DATABASE_URL", "throwaway"], ids=lambda how: f"postgres={how}")
def test_the_generated_test_suite_passes(project: Project, postgres: Any, postgres_for_tests: str) -> None:
    env = service_env()
    if postgres_for_tests == "DATABASE_URL":
        env["DATABASE_URL"] = postgres.create_database(f"suite_{project.driver}")
    run([project.bin("pytest"), "-q", "-p", "no:cacheprovider"], cwd=project.path, env=env, timeout=600)
