"""A generated service installed in its own virtual environment, and gunicorn serving it.

The plumbing the boot tests and the benchmarks share: the answers the tests generate with,
how a service's environment is built, gunicorn started and stopped as a real process, and a
watch on the database's connections in pg_stat_activity.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.generation import generate
from tests.support.processes import NotReadyError, answers_200, free_port, running, wait_until_ready

WORKERS = 2
POOL_SIZE = 3
MAX_OVERFLOW = 2
# Not the defaults, so the budget checked below is the one the answers set.
ANSWERS = {"project_name": "Boot Check", "workers": WORKERS, "pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
BUDGET = WORKERS * (POOL_SIZE + MAX_OVERFLOW)  # connections one instance may ever hold
STARTUP_TIMEOUT = 30  # seconds for gunicorn to answer /healthz
MISSING_ID = 2**62  # a valid bigint no test creates

# A service's environment is ours, minus anything that would steer it: the variables it reads
# (its settings are DB_*, PGBOUNCER*, and the bench endpoints' BENCH_*; OTEL_* turns tracing on)
# and those of Python and gunicorn.
STEERING = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "DATABASE_URL",
    "DIRECT_DATABASE_URL",
    "PORT",
    "WEB_CONCURRENCY",
    "GRACEFUL_TIMEOUT",
    "GUNICORN_CMD_ARGS",
)
STEERING_PREFIXES = ("DB_", "PGBOUNCER", "BENCH_", "OTEL_")


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
        """What gunicorn wrote, as text: each JSON log line as its level, logger and message
        (and traceback), so tests read the words whatever LOG_FORMAT is."""
        return "\n".join(readable(line) for line in self.raw_output().splitlines())

    def raw_output(self) -> str:
        return self.log.read_text(errors="replace")


def readable(line: str) -> str:
    """A JSON log line as text; any other line as it is."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    text = f"[{record.get('level')}] {record.get('logger')}: {record['message']}"
    return f"{text}\n{record['exc_info']}" if record.get("exc_info") else text


# Helpers


def service_env(**overrides: str) -> dict[str, str]:
    inherited = {
        key: value for key, value in os.environ.items() if key not in STEERING and not key.startswith(STEERING_PREFIXES)
    }
    return {**inherited, **overrides}


class CommandFailedError(AssertionError):
    """A command that exited with a code other than 0; the message holds its output."""


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run a command of a service (in its environment by default); its stdout, if it exits 0."""
    result = subprocess.run(
        command, cwd=cwd, env=env or service_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise CommandFailedError(
            f"`{shlex.join(command)}` failed with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def generate_and_install(answers: dict[str, object], workdir: Path, uv: str, extra: str = "test") -> Project:
    """Generate a variant with copier (answers must name its db_driver) and install it."""
    generated = generate("copier", answers, workdir)
    assert generated.project is not None, generated.error
    return install(generated.project, str(answers["db_driver"]), uv, extra)


def install(path: Path, driver: str, uv: str, extra: str = "test") -> Project:
    """A generated project installed into its own .venv with uv, with one of its extras (test, bench)."""
    env = service_env(UV_PYTHON_DOWNLOADS="never")
    run([uv, "venv", "--quiet", "--python", sys.executable, ".venv"], cwd=path, env=env)
    # Compiled now, or every gunicorn worker compiles its imports again (PYTHONDONTWRITEBYTECODE).
    install = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", ".venv/bin/python"]
    run([*install, "-e", f".[{extra}]"], cwd=path, env=env)
    return Project(path, driver)


def migrated_database(project: Project, postgres: Any, name: str) -> Database:
    """A fresh database on the throwaway server, migrated to the latest revision by the project."""
    # pytest may set a session fixture up again (a parametrised one, between modules): start over.
    postgres.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    database = Database(name, postgres.create_database(name))
    run([project.bin("alembic"), "upgrade", "head"], cwd=project.path, env=service_env(DATABASE_URL=database.url))
    return database


# application_name of the connection that holds the lock of items_locked()
LOCKER = "headroom-test-locker"


@contextmanager
def items_locked(database_url: str, seconds: float) -> Iterator[None]:
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


def item_paths(database: Database, names: list[str]) -> list[str]:
    """Items inserted straight into the database, and the paths the service serves them at."""
    with psycopg.connect(database.url) as connection:
        rows = connection.execute(
            "INSERT INTO items (name) SELECT unnest(%s::text[]) RETURNING id", (names,)
        ).fetchall()
    return [f"/items/{item_id}" for (item_id,) in rows]


@contextmanager
def gunicorn(project: Project, database_url: str, workers: int = WORKERS, **settings: str) -> Iterator[Gunicorn]:
    """Serve the project on a free port until the block ends (SIGTERM, then SIGKILL if it must)."""
    port = free_port()
    log = project.path.parent / f"gunicorn-{port}.log"
    env = service_env(DATABASE_URL=database_url, WEB_CONCURRENCY=str(workers), PORT=str(port), **settings)
    command = [project.bin("gunicorn"), "-c", "gunicorn.conf.py"]
    with running(command, log, cwd=project.path, env=env) as process:
        server = Gunicorn(process, f"http://127.0.0.1:{port}", log)
        wait_until_serving(server, workers)
        yield server


def wait_until_serving(server: Gunicorn, workers: int) -> None:
    """Until every worker has finished its lifespan startup and /healthz answers.

    One answer from /healthz proves only that one worker is up; tests that look at every worker's
    startup line would otherwise race the slower one.
    """

    def ready() -> bool:
        started = server.output().count("Application startup complete.") >= workers
        return started and answers_200(f"{server.url}/healthz")

    try:
        wait_until_ready(
            server.process, ready, STARTUP_TIMEOUT, name=f"gunicorn ({workers} workers)", output=server.output
        )
    except NotReadyError as error:
        pytest.fail(str(error))


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
