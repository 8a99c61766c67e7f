"""A bad setting at any entry point of a generated service: one line, no traceback, exit 2.

Each entry point runs as a real process of an installed service, with the service's
environment plus one bad setting (or a bad pair), and must end with exactly one line on
stderr that names the variable, the value and what is accepted. Nothing here reaches a
database: a bad setting is refused before anything connects.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from tests.support.processes import free_port
from tests.support.services import Project, service_env

pytestmark = pytest.mark.boot

BAD_SETTINGS_EXIT = 2
# Never connected to: every case below is refused first.
UNUSED_URL = "postgresql://app:s3cr3t@127.0.0.1:9/app"


@dataclass(frozen=True)
class Bad:
    """Settings that must be refused, and how the line that refuses them begins."""

    settings: dict[str, str | None]  # None: the variable is unset
    line: str


WHOLE = "is not accepted; use a whole number"
# One bad value for every variable the service reads, and the rules across variables.
BAD_SETTINGS = {
    "DATABASE_URL-unset": Bad({"DATABASE_URL": None}, "DATABASE_URL is not set; use postgresql://"),
    "DATABASE_URL-mysql": Bad(
        {"DATABASE_URL": "mysql://app:s3cr3t@db/app"},
        "DATABASE_URL='mysql://app:***@db/app' is not accepted: its scheme is mysql://",
    ),
    "DATABASE_URL-bad-port": Bad(
        {"DATABASE_URL": "postgresql://app:s3cr3t@db:port/app"},
        "DATABASE_URL='postgresql://app:***@db:port/app' is not accepted: it is not a URL",
    ),
    "DIRECT_DATABASE_URL-sqlite": Bad(
        {"DIRECT_DATABASE_URL": "sqlite:///app.db"}, "DIRECT_DATABASE_URL=sqlite:///app.db is not accepted"
    ),
    "WEB_CONCURRENCY-lots": Bad({"WEB_CONCURRENCY": "lots"}, f"WEB_CONCURRENCY=lots {WHOLE} from 1 to 256, or auto"),
    "WEB_CONCURRENCY-0": Bad({"WEB_CONCURRENCY": "0"}, f"WEB_CONCURRENCY=0 {WHOLE} from 1 to 256"),
    "REPLICAS-0": Bad({"REPLICAS": "0"}, f"REPLICAS=0 {WHOLE} of at least 1"),
    "MAX_SURGE-negative": Bad({"MAX_SURGE": "-1"}, f"MAX_SURGE=-1 {WHOLE} of at least 0"),
    "DB_POOL_SIZE-words": Bad({"DB_POOL_SIZE": "five"}, f"DB_POOL_SIZE=five {WHOLE} of at least 1"),
    "DB_MAX_OVERFLOW-negative": Bad({"DB_MAX_OVERFLOW": "-1"}, f"DB_MAX_OVERFLOW=-1 {WHOLE} of at least 0"),
    "DB_POOL_TIMEOUT-0": Bad({"DB_POOL_TIMEOUT": "0"}, "DB_POOL_TIMEOUT=0 is not accepted; use a number above 0"),
    "DB_MAX_CONNECTIONS-0": Bad({"DB_MAX_CONNECTIONS": "0"}, f"DB_MAX_CONNECTIONS=0 {WHOLE} of at least 1"),
    "DB_RESERVED_CONNECTIONS-fraction": Bad(
        {"DB_RESERVED_CONNECTIONS": "1.5"}, f"DB_RESERVED_CONNECTIONS=1.5 {WHOLE} of at least 0"
    ),
    "PGBOUNCER-maybe": Bad({"PGBOUNCER": "maybe"}, "PGBOUNCER=maybe is not accepted; use true or false"),
    "PGBOUNCER_MAX_CLIENT_CONN-0": Bad(
        {"PGBOUNCER_MAX_CLIENT_CONN": "0"}, f"PGBOUNCER_MAX_CLIENT_CONN=0 {WHOLE} of at least 1"
    ),
    "PGBOUNCER_POOL_SIZE-0": Bad({"PGBOUNCER_POOL_SIZE": "0"}, f"PGBOUNCER_POOL_SIZE=0 {WHOLE} of at least 1"),
    "QUEUE_BUDGET_MS-0": Bad({"QUEUE_BUDGET_MS": "0"}, f"QUEUE_BUDGET_MS=0 {WHOLE} from 1 to 60000"),
    "ADMISSION_QUEUE-empty": Bad({"ADMISSION_QUEUE": ""}, f"ADMISSION_QUEUE='' {WHOLE} of at least 0, or unset"),
    "SPARE_THREADS-0": Bad({"SPARE_THREADS": "0"}, f"SPARE_THREADS=0 {WHOLE} of at least 1"),
    "RETRY_AFTER-negative": Bad({"RETRY_AFTER": "-1"}, f"RETRY_AFTER=-1 {WHOLE} of at least 0"),
    "REQUEST_TIMEOUT-0": Bad({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT=0 is not accepted; use a number above 0"),
    "STATEMENT_TIMEOUT-words": Bad(
        {"STATEMENT_TIMEOUT": "soon"}, "STATEMENT_TIMEOUT=soon is not accepted; use a number above 0"
    ),
    "PORT-too-high": Bad({"PORT": "70000"}, f"PORT=70000 {WHOLE} from 1 to 65535"),
    "GUNICORN_TIMEOUT-0": Bad({"GUNICORN_TIMEOUT": "0"}, f"GUNICORN_TIMEOUT=0 {WHOLE} of at least 1"),
    "GRACEFUL_TIMEOUT-words": Bad({"GRACEFUL_TIMEOUT": "long"}, f"GRACEFUL_TIMEOUT=long {WHOLE} of at least 1"),
    "KEEPALIVE-0": Bad({"KEEPALIVE": "0"}, f"KEEPALIVE=0 {WHOLE} of at least 1"),
    "DRAIN_SECONDS-words": Bad(
        {"DRAIN_SECONDS": "soon"}, "DRAIN_SECONDS=soon is not accepted; use a number from 0 to 60"
    ),
    "MAX_REQUESTS-negative": Bad({"MAX_REQUESTS": "-1"}, f"MAX_REQUESTS=-1 {WHOLE} of at least 0"),
    "MAX_REQUESTS_JITTER-words": Bad(
        {"MAX_REQUESTS_JITTER": "some"}, f"MAX_REQUESTS_JITTER=some {WHOLE} of at least 0"
    ),
    "LOG_LEVEL-loud": Bad(
        {"LOG_LEVEL": "loud"}, "LOG_LEVEL=loud is not accepted; use one of debug, info, warning, error, critical"
    ),
    "LOG_FORMAT-yaml": Bad({"LOG_FORMAT": "yaml"}, "LOG_FORMAT=yaml is not accepted; use one of json, text"),
    "READINESS_TIMEOUT-0": Bad({"READINESS_TIMEOUT": "0"}, "READINESS_TIMEOUT=0 is not accepted; use a number above 0"),
    "BENCH_ENDPOINTS-perhaps": Bad(
        {"BENCH_ENDPOINTS": "perhaps"}, "BENCH_ENDPOINTS=perhaps is not accepted; use true or false"
    ),
    "ENVIRONMENT-staging": Bad(
        {"ENVIRONMENT": "staging"}, "ENVIRONMENT=staging is not accepted; use one of production, development"
    ),
    "DATABASE_URL-example-password": Bad(
        {"DATABASE_URL": "postgresql://app:change-me@127.0.0.1:9/app"},
        "DATABASE_URL has the example password 'change-me' of the project's example environment file",
    ),
    "SECRETS_DIR-missing": Bad(
        {"SECRETS_DIR": "/nonexistent/secrets"},
        "SECRETS_DIR=/nonexistent/secrets is not accepted: it is not a directory",
    ),
    "STATEMENT_TIMEOUT-beyond-REQUEST_TIMEOUT": Bad(
        {"STATEMENT_TIMEOUT": "20", "REQUEST_TIMEOUT": "15"}, "STATEMENT_TIMEOUT=20 exceeds REQUEST_TIMEOUT=15: "
    ),
    "GRACEFUL_TIMEOUT-below-REQUEST_TIMEOUT": Bad(
        {"GRACEFUL_TIMEOUT": "10", "REQUEST_TIMEOUT": "15"},
        "GRACEFUL_TIMEOUT=10 is shorter than REQUEST_TIMEOUT=15: requests still running",
    ),
}

# Every way to start something of the service that reads its settings. None of them serves
# for long when the settings are good: gunicorn and `python -m` only check their configuration.
ENTRY_POINTS = {
    "python-m": ["python", "-m", "boot_check", "--check-config"],
    "gunicorn": ["gunicorn", "-c", "gunicorn.conf.py", "--check-config"],
    "capacity": ["python", "-m", "boot_check.capacity", "--check-server"],
    "uvicorn-factory": ["uvicorn", "boot_check.main:create_app", "--factory", "--host", "127.0.0.1"],
    "alembic": ["alembic", "upgrade", "head", "--sql"],
}
# One of each kind, through every entry point: the table above goes through `python -m`, the
# supported way to start the service (the Dockerfile and the systemd unit use it).
EACH_KIND = ["DATABASE_URL-unset", "DATABASE_URL-mysql", "DB_POOL_SIZE-words", "GRACEFUL_TIMEOUT-below-REQUEST_TIMEOUT"]


def refuse(project: Project, entry_point: str, bad: Bad) -> str:
    """Run the entry point with the bad settings; the one line it ends with."""
    command = ENTRY_POINTS[entry_point]
    env = service_env(DATABASE_URL=UNUSED_URL, PORT=str(free_port()))
    for variable, value in bad.settings.items():
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    if entry_point == "uvicorn-factory":  # uvicorn's own option: PORT is the service's
        command = [*command, "--port", str(free_port())]
    result = subprocess.run(
        [project.bin(command[0]), *command[1:]],
        cwd=project.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == BAD_SETTINGS_EXIT, output
    assert result.stdout == "", output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, output
    assert "s3cr3t" not in output
    return lines[0]


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=str)
def test_python_m_refuses_every_bad_setting_in_one_line(project: Project, case: str) -> None:
    bad = BAD_SETTINGS[case]
    assert refuse(project, "python-m", bad).startswith(bad.line)


@pytest.mark.parametrize("entry_point", [name for name in ENTRY_POINTS if name != "python-m"], ids=str)
@pytest.mark.parametrize("case", EACH_KIND, ids=str)
def test_every_entry_point_refuses_a_bad_setting_in_one_line(project: Project, entry_point: str, case: str) -> None:
    bad = BAD_SETTINGS[case]
    assert refuse(project, entry_point, bad).startswith(bad.line)


def test_the_table_has_a_bad_value_for_every_variable(project: Project) -> None:
    """Every field of the service's settings, read from the generated settings.py itself."""
    listed = subprocess.run(
        [project.bin("python"), "-c", "from boot_check.settings import Settings; print(*Settings.model_fields)"],
        cwd=project.path,
        env=service_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    tested = {variable for bad in BAD_SETTINGS.values() for variable in bad.settings}
    assert {field.upper() for field in listed} <= tested
    assert len(listed) >= 24
