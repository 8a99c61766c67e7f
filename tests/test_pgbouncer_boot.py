"""The PgBouncer variant, booted for real: each db_driver generated with pgbouncer=true, served
by gunicorn through Debian's pgbouncer (transaction pooling) in front of the session's
throwaway PostgreSQL.

PgBouncer runs from the generated pgbouncer.ini (the compose target's), changed only where a
test machine differs from the compose stack: where PostgreSQL and PgBouncer listen, where the
auth file is, and an admin user for its console (SHOW POOLS, SHOW CLIENTS). Migrations go
straight to PostgreSQL through DIRECT_DATABASE_URL, as the generated deployment files have
them, while DATABASE_URL names PgBouncer.

The pools are sized so that transaction pooling is really exercised: the service may hold 30
client connections per instance, PgBouncer has 4 server connections for all of them. The
admission queue is deep enough for the load's concurrency, so any 5xx is PgBouncer's doing.
Each driver: about 35 s, most of it installing the project and the 10 s statement_timeout.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.answers import DRIVERS
from tests.support.processes import NotReadyError, free_port, running, wait_until, wait_until_ready
from tests.support.services import (
    ConnectionWatch,
    Gunicorn,
    Project,
    generate_and_install,
    gunicorn,
    run,
    service_env,
)

pytestmark = pytest.mark.boot

WORKERS = 2
POOL_SIZE = 10
MAX_OVERFLOW = 5
CLIENTS_PER_INSTANCE = WORKERS * (POOL_SIZE + MAX_OVERFLOW)  # 30: what one instance may open to PgBouncer
MAX_CLIENT_CONN = 100  # the plan's peak, (1 + 1) x 30 = 60, fits
SERVER_POOL = 4  # PgBouncer's connections to PostgreSQL, shared by all 30
POOL_TIMEOUT = 2  # also PgBouncer's query_wait_timeout
SLUG = "pgbouncer_check"
ANSWERS = {
    "project_name": "PgBouncer Check",
    "project_slug": SLUG,
    "workers": WORKERS,
    "pool_size": POOL_SIZE,
    "max_overflow": MAX_OVERFLOW,
    "pool_timeout": POOL_TIMEOUT,
    "pgbouncer": True,
    "pgbouncer_max_client_conn": MAX_CLIENT_CONN,
    "pgbouncer_pool_size": SERVER_POOL,
}
USER, PASSWORD = "postgres", "bouncer-secret"  # the throwaway server's superuser; PgBouncer checks the password
STATEMENT_TIMEOUT = 10  # seconds: STATEMENT_TIMEOUT's default, which pgbouncer.ini sets
# Errors of a driver that prepares statements behind transaction pooling.
PREPARED_STATEMENT_ERRORS = re.compile(r"prepared statement|InvalidSQLStatementName|DuplicatePreparedStatement", re.I)


@dataclass
class PgBouncer:
    """A running pgbouncer process and how to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def show(self, what: str) -> list[dict[str, Any]]:
        """A SHOW command of PgBouncer's admin console, which speaks only the simple query protocol:
        psycopg uses it for a query without parameters, unless it prepares a repeated one."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None) as console:
            cursor = console.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class PoolWatch:
    """Samples PgBouncer's view of one database: its clients and its server connections."""

    pgbouncer: PgBouncer
    database: str
    clients: list[int] = field(default_factory=list)
    servers: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        with psycopg.connect(self.pgbouncer.url("pgbouncer"), autocommit=True, prepare_threshold=None) as console:
            while not self._stop.is_set():
                pools = [row for row in self._rows(console, "POOLS") if row["database"] == self.database]
                clients = [row for row in self._rows(console, "CLIENTS") if row["database"] == self.database]
                self.clients.append(len(clients))
                self.servers.append(
                    sum(
                        row[key]
                        for row in pools
                        for key in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
                    )
                )
                time.sleep(0.01)

    @staticmethod
    def _rows(console: psycopg.Connection[Any], what: str) -> list[dict[str, Any]]:
        cursor = console.execute(f"SHOW {what}")
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def __enter__(self) -> PoolWatch:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="session")
def pgbouncer_program() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("these tests need PgBouncer: `apt-get install pgbouncer` (see .ci/run)", pytrace=False)
    return found


@pytest.fixture(scope="module", params=DRIVERS, ids=lambda driver: f"db_driver={driver}")
def bounced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, uv: str) -> Project:
    """The variant generated with pgbouncer=true and installed."""
    driver = request.param
    return generate_and_install({**ANSWERS, "db_driver": driver}, tmp_path_factory.mktemp(f"pgbouncer-{driver}"), uv)


def local_configuration(generated_ini: str, postgres: Any, listen_port: int, auth_file: Path) -> str:
    """The generated pgbouncer.ini with this machine's addresses; every change must apply exactly once."""
    changes = [
        (r"^\* = host=postgres port=5432 ", f"* = host={postgres.host} port={postgres.port} "),
        (r"^listen_addr = 0\.0\.0\.0$", "listen_addr = 127.0.0.1"),
        (r"^listen_port = 6432$", f"listen_port = {listen_port}"),
        (r"^auth_file = /tmp/userlist\.txt$", f"auth_file = {auth_file}\nadmin_users = {USER}"),
    ]
    for pattern, replacement in changes:
        generated_ini, count = re.subn(pattern, replacement, generated_ini, flags=re.M)
        assert count == 1, f"pgbouncer.ini has no line matching {pattern!r}"
    return generated_ini


@pytest.fixture(scope="module")
def pgbouncer(bounced: Project, postgres: Any, pgbouncer_program: str) -> Iterator[PgBouncer]:
    """pgbouncer started from the project's pgbouncer.ini, as an unprivileged user when run as root."""
    account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None  # PgBouncer refuses to run as root
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    try:
        port = free_port()
        config, auth, log = workdir / "pgbouncer.ini", workdir / "userlist.txt", workdir / "pgbouncer.log"
        config.write_text(local_configuration((bounced.path / "pgbouncer.ini").read_text(), postgres, port, auth))
        auth.write_text(f'"{USER}" "{PASSWORD}"\n')
        if account is not None:
            for path in (workdir, config, auth):
                os.chown(path, account.pw_uid, account.pw_gid)
        with running(
            [pgbouncer_program, str(config)],
            log,
            stop_signal=signal.SIGINT,  # safe shutdown
            stop_timeout=10,
            cwd=workdir,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        ) as process:
            bouncer = PgBouncer(process, port, log)
            wait_until_listening(bouncer)
            yield bouncer
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until_listening(bouncer: PgBouncer, timeout: float = 10) -> None:
    def answers() -> bool:
        try:
            bouncer.show("VERSION")
        except psycopg.OperationalError:
            return False
        return True

    try:
        wait_until_ready(bouncer.process, answers, timeout, name="pgbouncer", output=bouncer.output, interval=0.05)
    except NotReadyError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def database(bounced: Project, postgres: Any, pgbouncer: PgBouncer) -> str:
    """A fresh database migrated straight on PostgreSQL, although DATABASE_URL names PgBouncer."""
    name = f"pgbouncer_{bounced.driver}"
    direct = postgres.create_database(name)
    env = service_env(DATABASE_URL=pgbouncer.url(name), DIRECT_DATABASE_URL=direct)
    run([bounced.bin("alembic"), "upgrade", "head"], cwd=bounced.path, env=env)
    assert postgres.sql("SELECT count(*) FROM items", database=name) == "0"
    assert name not in {row["database"] for row in pgbouncer.show("POOLS")}, "the migration went through PgBouncer"
    return name


@pytest.fixture(scope="module")
def service(bounced: Project, pgbouncer: PgBouncer, database: str) -> Iterator[Gunicorn]:
    # A queue deep and patient enough for the load below: the admission gate refuses nothing, so
    # any 5xx is PgBouncer's doing. (Its 4 server connections make every hold long: with the
    # default 500 ms budget the gate rightly refuses part of a 50-request burst on a slow machine.)
    with gunicorn(bounced, pgbouncer.url(database), ADMISSION_QUEUE="60", QUEUE_BUDGET_MS="10000") as server:
        yield server


def crud(url: str, creates: int = 120, concurrency: int = 50) -> tuple[Counter[tuple[str, int]], int]:
    """`creates` items made concurrently, then as many requests again mixing POST, GET, PATCH and
    DELETE on them (and listings); the (method, status) pairs and how many requests ran."""

    async def request(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> tuple[str, int]:
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.TransportError as error:  # counted, so that the test shows the service's log
            return f"{method} {type(error).__name__}", 0
        return method, response.status_code

    async def everything() -> tuple[Counter[tuple[str, int]], int]:
        # No keep-alive: on a loaded machine a client can read an answer late and reuse its
        # connection just as the server's keep-alive timer closes it (a ReadError that says
        # nothing about PgBouncer, which is what this load is for).
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            made = await asyncio.gather(
                *(client.post("/items", json={"name": f"item {number}"}) for number in range(creates))
            )
            created = Counter(("POST", response.status_code) for response in made)
            ids = [response.json()["id"] for response in made if response.status_code == 201]
            half = creates // 2
            mixed = [
                *(request(client, "POST", "/items", json={"name": f"more {number}"}) for number in range(half // 2)),
                *(request(client, "GET", f"/items/{item}") for item in ids[:half]),
                *(request(client, "PATCH", f"/items/{item}", json={"description": "patched"}) for item in ids[:half]),
                *(request(client, "DELETE", f"/items/{item}") for item in ids[half:]),
                *(request(client, "GET", "/items", params={"limit": 50}) for _ in range(half // 2)),
            ]
            statuses = Counter(await asyncio.gather(*mixed))
            return statuses + created, creates + len(mixed)

    return asyncio.run(everything())


def runaway_query(url: str, seconds: float, outcome: dict[str, Any]) -> None:
    """A query through PgBouncer that would outlast the statement_timeout; how it ended, and when."""
    started = time.monotonic()
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("SELECT pg_sleep(%s)", (seconds,))
        outcome["error"] = None
    except psycopg.Error as error:
        outcome["error"] = error
    outcome["seconds"] = time.monotonic() - started


def test_concurrent_crud_through_pgbouncer_stays_within_both_sides_of_the_plan(
    service: Gunicorn, pgbouncer: PgBouncer, database: str, postgres: Any
) -> None:
    with ConnectionWatch(postgres.url("postgres"), database) as postgres_side, PoolWatch(pgbouncer, database) as pools:
        statuses, requests = crud(service.url)

    expected = {"POST": 201, "GET": 200, "PATCH": 200, "DELETE": 204}
    assert requests >= 240
    log = service.output()
    assert {method: status for method, status in statuses} == expected, f"{statuses}\n{log}"
    assert not PREPARED_STATEMENT_ERRORS.search(log), log
    assert "Traceback" not in log, log

    # PostgreSQL's side: never more than PgBouncer's server pool, whatever the clients.
    assert 1 <= postgres_side.peak <= SERVER_POOL, postgres_side.samples
    assert max(pools.servers) <= SERVER_POOL
    # PgBouncer's side: the instance's connections within the plan, and more of them than there
    # are server connections, so transactions really took turns on the server pool.
    assert SERVER_POOL < max(pools.clients) <= CLIENTS_PER_INSTANCE, pools.clients


def test_the_services_own_connections_carry_the_statement_timeout(
    bounced: Project, pgbouncer: PgBouncer, database: str
) -> None:
    """Through the service's engine, configured for PgBouncer: the server connections it gets have it."""
    script = (
        f"from {SLUG}.db import query_server\n"
        f"from {SLUG}.settings import Settings\n"
        "print(query_server(Settings(), 'SHOW statement_timeout')[0][0])\n"
    )
    shown = run(
        [bounced.bin("python"), "-c", script], cwd=bounced.path, env=service_env(DATABASE_URL=pgbouncer.url(database))
    )
    assert shown.strip() == f"{STATEMENT_TIMEOUT}s"


def test_runaway_queries_are_cancelled_and_waiting_requests_get_503(
    service: Gunicorn, pgbouncer: PgBouncer, database: str
) -> None:
    """Runaway queries through PgBouncer take every server connection. A request of the service
    waits in PgBouncer's queue at most query_wait_timeout (pool_timeout) per try, and is
    answered 503, not 500, long before PostgreSQL cancels the runaway queries at the
    statement_timeout PgBouncer set."""
    outcomes: list[dict[str, Any]] = [{} for _ in range(SERVER_POOL)]
    runaways = [
        threading.Thread(target=runaway_query, args=(pgbouncer.url(database), STATEMENT_TIMEOUT + 5, outcome))
        for outcome in outcomes
    ]
    for runaway in runaways:
        runaway.start()
    try:

        def all_servers_busy() -> bool:
            pools = pgbouncer.show("POOLS")
            return any(row["database"] == database and row["sv_active"] == SERVER_POOL for row in pools)

        assert wait_until(all_servers_busy, timeout=5, interval=0.05), pgbouncer.show("POOLS")
        started = time.monotonic()
        response = httpx.get(f"{service.url}/items/1", timeout=30)
        waited = time.monotonic() - started
    finally:
        for runaway in runaways:
            runaway.join()

    assert response.status_code == 503, f"{response.text} after {waited:.1f} s\n{service.output()[-3000:]}"
    assert response.headers.get("Retry-After")
    assert POOL_TIMEOUT - 0.5 <= waited < STATEMENT_TIMEOUT - 1
    assert "query_wait_timeout" in pgbouncer.output()
    for outcome in outcomes:
        assert isinstance(outcome["error"], psycopg.errors.QueryCanceled), outcome
        assert "statement timeout" in str(outcome["error"])
        assert STATEMENT_TIMEOUT - 0.5 <= outcome["seconds"] < STATEMENT_TIMEOUT + 3, outcome
    assert httpx.get(f"{service.url}/readyz", timeout=10).status_code == 200, "and it serves again"
