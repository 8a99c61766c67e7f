"""Every way the database refuses or fails to answer is a 503 with Retry-After, in both variants.

Against a real PostgreSQL, what a real server can be made to do: refuse a wrong password, a
database that does not exist, a client past max_connections, and restart under load. Against a
fake server on loopback (tests/support/fake_postgres.py), the rest: each FATAL code PostgreSQL can send
during startup, and a server that accepts the connection and never answers, which must not be
mistaken for the service's own deadline (504). A bug still is a 500 with its traceback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.fake_postgres import FakeServer, fake_postgres, refuse_at_startup, silent
from tests.support.generation import template_module
from tests.support.services import Database, Gunicorn, Project, gunicorn, migrated_database

pytestmark = pytest.mark.boot

MAX_CONNECTIONS = 20
ROLE, PASSWORD = "app_user", "the-right-one"
POOL_TIMEOUT = 1  # seconds: asyncpg's connect timeout; psycopg's is libpq's minimum, 2
REQUEST_TIMEOUT = 15  # the service's default deadline, far from either


def assert_unavailable(answer: httpx.Response, server: Gunicorn) -> None:
    assert answer.status_code == 503, f"{answer.status_code} {answer.text}\n{server.output()}"
    assert answer.headers["Retry-After"] == "1"


def database_requests(client: httpx.Client) -> list[httpx.Response]:
    """A read by key, a list and a write: the three ways the routes reach the database."""
    return [client.get("/items/1"), client.get("/items"), client.post("/items", json={"name": "lost"})]


# A real server of the module's own: it is filled up, restarted, and asks one role for a password.


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Any]:
    with template_module("tests/postgres_server.py").throwaway_postgres(max_connections=MAX_CONNECTIONS) as server:
        require_password(server)
        yield server


def require_password(server: Any) -> None:
    """ROLE logs in with PASSWORD only (scram-sha-256 in pg_hba.conf); everyone else stays trusted."""
    server.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    hba = Path(server.sql("SHOW hba_file"))
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    server.sql("SELECT pg_reload_conf()")
    wrong = f"postgresql://{ROLE}:wrong@{server.host}:{server.port}/postgres"
    deadline = time.monotonic() + 10
    while (refused := refusal(wrong)) is None:  # the reload is a signal: until the server has read the file
        assert time.monotonic() < deadline, "the server never asked for the password"
        time.sleep(0.05)
    assert "password authentication failed" in refused
    right = f"postgresql://{ROLE}:{PASSWORD}@{server.host}:{server.port}/postgres"
    assert refusal(right) is None


def refusal(url: str) -> str | None:
    """Why the server refuses a connection to `url`; None if it accepts it."""
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        return str(error)
    return None


@pytest.fixture(scope="module")
def own_database(project: Project, own_postgres: Any) -> Database:
    return migrated_database(project, own_postgres, f"failures_{project.driver}")


@contextmanager
def wrong_password(server: Any, database: Database) -> Iterator[str]:
    yield f"postgresql://{ROLE}:wrong@{server.host}:{server.port}/{database.name}"


@contextmanager
def missing_database(server: Any, database: Database) -> Iterator[str]:
    yield server.url("no_such_database")


@contextmanager
def every_slot_taken(server: Any, database: Database) -> Iterator[str]:
    """Connections to the server until it says "too many clients", held while the block runs."""
    with ExitStack() as held:
        for _ in range(MAX_CONNECTIONS + 1):
            if (refused := refusal(server.url())) is not None:
                break
            held.enter_context(psycopg.connect(server.url(), connect_timeout=5))
        else:
            pytest.fail(f"the server took more than its max_connections, {MAX_CONNECTIONS}")
        assert "too many clients" in refused
        yield database.url


REAL_REFUSALS = {
    "wrong-password": wrong_password,  # 28P01
    "missing-database": missing_database,  # 3D000
    "max-connections-reached": every_slot_taken,  # 53300
}


@pytest.mark.parametrize("refusal", REAL_REFUSALS, ids=str)
def test_a_real_refusal_at_connect_is_a_503(
    project: Project, own_postgres: Any, own_database: Database, refusal: str
) -> None:
    with (
        REAL_REFUSALS[refusal](own_postgres, own_database) as url,
        gunicorn(project, url, workers=1) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        answers = database_requests(client)
        readyz = client.get("/readyz")
    for answer in answers:
        assert_unavailable(answer, server)
    assert readyz.status_code == 503
    assert "Traceback" not in server.output()


def test_a_write_to_a_read_only_database_is_a_503_and_reads_go_on(project: Project, own_postgres: Any) -> None:
    """What a write meets on a standby after a failover, or on a database set read-only (25006)."""
    database = migrated_database(project, own_postgres, f"read_only_{project.driver}")
    own_postgres.sql(f"ALTER DATABASE {database.name} SET default_transaction_read_only = on")
    with gunicorn(project, database.url, workers=1) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        write = client.post("/items", json={"name": "refused"})
        read = client.get("/items")
    assert_unavailable(write, server)
    assert read.status_code == 200, read.text
    assert "Traceback" not in server.output()


# A restart under load


SHUTTING_DOWN = 0.5  # seconds a smart shutdown refuses new connections before the restart
TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"


def restart(server: Any, database: str) -> None:
    """Restart the server as an operator does who lets clients finish first, compressed in time.

    A smart shutdown refuses new connections ("the database system is shutting down") while the
    open sessions go on; here they end at once (terminated, as their clients would leave), so
    the service must reconnect into the refusal. Then `pg_ctl restart -m fast`: connections
    are refused while the server is down and starting up.
    """
    data = Path(server.sql("SHOW data_directory"))
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    pg_ctl = str(Path(f"/proc/{postmaster}/exe").resolve().parent / "pg_ctl")
    log = str(data.parent / "restart.log")  # the server's output, or pg_ctl's pipe would stay open
    with psycopg.connect(server.url(), autocommit=True) as admin:  # opened while connections are allowed
        as_owner(data, pg_ctl, "stop", "-D", str(data), "-m", "smart", "-W")
        time.sleep(0.1)  # pg_ctl -W only sent the signal
        admin.execute(TERMINATE, (database,))
        time.sleep(SHUTTING_DOWN)
    as_owner(data, pg_ctl, "restart", "-D", str(data), "-m", "fast", "-w", "-t", "60", "-l", log)


def as_owner(data: Path, *command: str) -> None:
    """Run a command of the server's as the owner of its data folder (PostgreSQL refuses root)."""
    owner = data.stat()
    account: dict[str, Any] = (
        {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []} if os.geteuid() == 0 else {}
    )
    result = subprocess.run(
        command, cwd=data.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90, **account
    )
    assert result.returncode == 0, f"{' '.join(command)} failed: {result.stdout}{result.stderr}"


def load_across_a_restart(url: str, path: str, server: Any, database: str, clients: int = 50) -> Counter[int | str]:
    """`clients` keep-alive clients send requests before, during and for a second after a restart;
    the statuses they got, and the names of transport errors."""
    outcomes: Counter[int | str] = Counter()

    async def client_loop(client: httpx.AsyncClient, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                outcomes[(await client.get(path)).status_code] += 1
            except httpx.TransportError as error:
                outcomes[type(error).__name__] += 1

    async def run() -> None:
        done = asyncio.Event()
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            loops = [asyncio.create_task(client_loop(client, done)) for _ in range(clients)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(restart, server, database)
            await asyncio.sleep(1)
            done.set()
            await asyncio.gather(*loops)

    asyncio.run(run())
    return outcomes


def test_a_restart_under_load_answers_200_or_503_and_the_service_recovers(
    project: Project, own_postgres: Any, own_database: Database
) -> None:
    with gunicorn(project, own_database.url) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.post("/items", json={"name": "outlives a restart"})
        assert created.status_code == 201, created.text
        path = f"/items/{created.json()['id']}"
        outcomes = load_across_a_restart(server.url, path, own_postgres, own_database.name)
        recovered = [client.get(path).status_code for _ in range(5)]
    assert set(outcomes) <= {200, 503}, f"{outcomes}\n{server.output()}"
    assert outcomes[503] > 0, f"no request met the restart: {outcomes}"
    assert recovered == [200] * 5, server.output()
    assert "Traceback" not in server.output()


# What only a fake server can be made to do


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeServer]:
    with fake_postgres(silent) as server:
        yield server


@pytest.fixture(scope="module")
def served_by_fake(project: Project, fake_server: FakeServer) -> Iterator[Gunicorn]:
    settings = {"DB_POOL_TIMEOUT": str(POOL_TIMEOUT), "REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)}
    with gunicorn(project, fake_server.url(), workers=1, **settings) as server:
        yield server


# What PostgreSQL says when it refuses a connection during startup (its source: postmaster.c,
# postinit.c, auth.c), one FATAL ErrorResponse each.
STARTUP_REFUSALS = [
    ("57P03", "the database system is starting up"),
    ("57P03", "the database system is shutting down"),
    ("57P03", "the database system is not yet accepting connections"),
    ("57P01", "terminating connection due to administrator command"),
    ("53300", "sorry, too many clients already"),
    ("53300", "remaining connection slots are reserved for roles with the SUPERUSER attribute"),
    ("53300", 'too many connections for role "postgres"'),
    ("53200", "out of memory"),
    ("28P01", 'password authentication failed for user "postgres"'),
    ("28000", 'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "app", no encryption'),
    ("28000", 'role "postgres" does not exist'),
    ("3D000", 'database "app" does not exist'),
    ("08P01", "invalid length of startup packet"),
    # Codes the SQLSTATE table does not list: any refusal before the session starts is a 503.
    ("42501", 'permission denied for database "app"'),
    ("55000", 'database "app" is not currently accepting connections'),
    ("XX000", "an internal error the server reports while starting the session"),
]


@pytest.mark.parametrize(("code", "message"), STARTUP_REFUSALS, ids=[message for _, message in STARTUP_REFUSALS])
def test_each_refusal_postgresql_sends_at_startup_is_a_503(
    served_by_fake: Gunicorn, fake_server: FakeServer, code: str, message: str
) -> None:
    fake_server.session = refuse_at_startup(code, message)
    with httpx.Client(base_url=served_by_fake.url, timeout=30) as client:
        answers = database_requests(client)
    for answer in answers:
        assert_unavailable(answer, served_by_fake)
    assert "Traceback" not in served_by_fake.output()


def test_a_database_that_never_answers_is_a_503_not_the_deadline(
    served_by_fake: Gunicorn, fake_server: FakeServer
) -> None:
    fake_server.session = silent
    started = time.monotonic()
    answer = httpx.get(f"{served_by_fake.url}/items/1", timeout=30)
    waited = time.monotonic() - started
    assert_unavailable(answer, served_by_fake)
    assert answer.json() == {"detail": "database unavailable: retry later"}
    assert waited < REQUEST_TIMEOUT / 3, f"{waited:.1f} s: the connect timeout is {POOL_TIMEOUT} s"
    assert "deadline" not in served_by_fake.output()
    assert "Traceback" not in served_by_fake.output()


# A bug is still a bug


def test_a_query_on_a_missing_table_is_a_500_with_its_traceback(project: Project, postgres: Any) -> None:
    unmigrated = postgres.create_database(f"unmigrated_{project.driver}")
    with gunicorn(project, unmigrated, workers=1) as server:
        answer = httpx.get(f"{server.url}/items/1", timeout=30)
    assert answer.status_code == 500, answer.text
    assert "Traceback" in server.output()
    assert 'relation "items" does not exist' in server.output()
