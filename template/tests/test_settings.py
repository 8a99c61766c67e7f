"""Settings: read from the environment, DATABASE_URL normalised, the capacity plan derived,
and every bad value refused in one line naming the variable, the value and what is accepted."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.project_slug }} import defaults
from {{ cookiecutter.project_slug }}.cpus import available_cpus
from {{ cookiecutter.project_slug }}.db import connect_args
from {{ cookiecutter.project_slug }}.defaults import DRIVER, DRIVERNAME
from {{ cookiecutter.project_slug }}.settings import (
    BAD_SETTINGS,
    EXAMPLE_PASSWORDS,
    PlanSettings,
    Settings,
    SettingsError,
    load_settings,
    settings_or_exit,
)

URL = "postgresql://app:secret@db.example:5432/app"


@pytest.fixture(autouse=True)
def empty_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the shell's DATABASE_URL or WEB_CONCURRENCY must not leak in."""
    for name in [*Settings.model_fields, "secrets_dir"]:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_come_from_defaults_py() -> None:
    settings = Settings(database_url=URL)
    assert settings.web_concurrency == defaults.WORKERS
    assert settings.db_pool_size == defaults.POOL_SIZE
    assert settings.db_max_overflow == defaults.MAX_OVERFLOW
    assert settings.db_pool_timeout == defaults.POOL_TIMEOUT
    assert settings.db_max_connections == defaults.DB_MAX_CONNECTIONS
    assert settings.db_reserved_connections == defaults.DB_RESERVED_CONNECTIONS
    assert settings.port == defaults.PORT
    assert settings.graceful_timeout == defaults.GRACEFUL_TIMEOUT
    assert settings.pgbouncer is defaults.PGBOUNCER
    assert settings.pgbouncer_max_client_conn == defaults.PGBOUNCER_MAX_CLIENT_CONN
    assert settings.pgbouncer_pool_size == defaults.PGBOUNCER_POOL_SIZE


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("DB_POOL_SIZE", "4")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("READINESS_TIMEOUT", "0.5")
    settings = Settings()
    assert (settings.web_concurrency, settings.db_pool_size, settings.db_max_overflow) == (3, 4, 0)
    assert settings.port == 9000
    assert settings.readiness_timeout == 0.5


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db.example:5432/app",
        "postgres://app:secret@db.example:5432/app",
        f"{DRIVERNAME}://app:secret@db.example:5432/app",
    ],
)
def test_database_url_gets_this_services_driver(url: str) -> None:
    settings = Settings(database_url=url)
    assert settings.database_url == f"{DRIVERNAME}://app:secret@db.example:5432/app"


def test_migrations_go_to_the_direct_url_when_there_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = Settings(database_url=URL)
    assert plain.migration_database_url == f"{DRIVERNAME}://app:secret@db.example:5432/app"
    direct = Settings(database_url=URL, direct_database_url="postgres://app:secret@db:5432/app")
    assert direct.migration_database_url == f"{DRIVERNAME}://app:secret@db:5432/app"
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DIRECT_DATABASE_URL", "mysql://app@db/app")
    with pytest.raises(SettingsError, match="DIRECT_DATABASE_URL=mysql://app@db/app is not"):
        load_settings(Settings)


def test_password_is_masked_for_logs() -> None:
    assert "secret" not in Settings(database_url=URL).safe_database_url


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql://app@db.example:port/app",
        "mysql://app@db.example/app",
        "postgresql+psycopg2://app@db.example/app",
        "sqlite:///app.db",
    ],
)
def test_bad_database_url_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SettingsError, match=r"^DATABASE_URL=.* is not accepted: "):
        load_settings(Settings)


def test_missing_database_url_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match=r"^DATABASE_URL is not set"):
        load_settings(Settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("web_concurrency", 0),
        ("db_pool_size", 0),
        ("db_max_overflow", -1),
        ("db_pool_timeout", 0),
        ("db_max_connections", 0),
        ("db_reserved_connections", -1),
        ("port", 70000),
    ],
)
def test_out_of_range_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, value: int
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv(field.upper(), str(value))
    with pytest.raises(SettingsError, match=rf"^{field.upper()}={value} is not accepted"):
        load_settings(Settings)


def test_settings_that_do_not_fit_make_a_plan_that_says_so() -> None:
    settings = Settings(
        database_url=URL,
        pgbouncer=False,
        web_concurrency=4,
        db_pool_size=20,
        db_max_overflow=10,
        replicas=1,
        max_surge=1,
        db_max_connections=100,
        db_reserved_connections=10,
    )
    budget, origin = settings.plan_problems()
    assert "(1 + 1) x 4 x (20 + 10) = 240 connections" in budget
    assert "100 - 10 = 90 are available" in budget
    assert "the largest pool_size that fits is 1" in budget
    assert (
        "WEB_CONCURRENCY=4, DB_POOL_SIZE=20, DB_MAX_OVERFLOW=10, REPLICAS=1, MAX_SURGE=1" in origin
    )


def test_reserved_at_or_above_max_connections_does_not_fit() -> None:
    settings = Settings(database_url=URL, db_max_connections=100, db_reserved_connections=100)
    assert "db_reserved_connections: 100 must be from 0 to 99" in settings.plan_problems()


def test_a_budget_that_fits_exactly_is_accepted() -> None:
    settings = Settings(
        database_url=URL,
        web_concurrency=3,
        db_pool_size=10,
        db_max_overflow=5,
        replicas=1,
        max_surge=1,
        db_max_connections=100,
        db_reserved_connections=10,
    )
    plan = settings.capacity_plan()
    assert plan.peak_connections == plan.available_connections == 90
    assert settings.plan_problems() == []


def test_auto_workers_follow_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("WEB_CONCURRENCY", "auto")
    assert Settings().web_concurrency == available_cpus()


def test_a_statement_timeout_beyond_the_request_deadline_is_refused() -> None:
    with pytest.raises(ValidationError, match="STATEMENT_TIMEOUT=20 exceeds REQUEST_TIMEOUT=15"):
        Settings(database_url=URL, statement_timeout=20, request_timeout=15)


def test_behind_pgbouncer_the_fleet_meets_max_client_conn_and_postgres_the_server_pool() -> None:
    behind = Settings(
        database_url=URL,
        pgbouncer=True,
        web_concurrency=4,
        db_pool_size=20,
        db_max_overflow=10,
        replicas=1,
        max_surge=1,
        db_max_connections=100,
        db_reserved_connections=10,
        pgbouncer_max_client_conn=240,
        pgbouncer_pool_size=90,
    )
    plan = behind.capacity_plan()
    assert (plan.peak_connections, plan.client_limit, plan.headroom) == (240, 240, 0)
    assert (plan.server_connections, plan.available_connections) == (90, 90)
    assert plan.server_headroom == 0
    assert behind.plan_problems() == []

    too_many_clients = behind.model_copy(update={"pgbouncer_max_client_conn": 200})
    budget, origin = too_many_clients.plan_problems()
    assert "connection budget exceeded at PgBouncer" in budget
    assert "= 240 client connections, but pgbouncer_max_client_conn is 200" in budget
    assert "PGBOUNCER_MAX_CLIENT_CONN=200, PGBOUNCER_POOL_SIZE=90" in origin

    too_many_servers = behind.model_copy(update={"pgbouncer_pool_size": 91})
    [budget, _] = too_many_servers.plan_problems()
    assert "pgbouncer_pool_size = 91 server connections" in budget
    assert "100 - 10 = 90 are available" in budget


def test_behind_pgbouncer_connections_prepare_nothing_and_send_no_startup_settings() -> None:
    direct = connect_args(Settings(database_url=URL, pgbouncer=False))
    behind = connect_args(Settings(database_url=URL, pgbouncer=True))
    # PgBouncer refuses startup parameters it does not know: statement_timeout goes there only.
    assert {"server_settings", "options"} & set(direct)
    assert not {"server_settings", "options"} & set(behind)
    # DRIVER is a one-value Literal in each variant: widened, so mypy keeps both branches.
    driver: str = DRIVER
    if driver == "async":
        assert behind["statement_cache_size"] == behind["prepared_statement_cache_size"] == 0
        names = {behind["prepared_statement_name_func"]() for _ in range(3)}
        assert len(names) == 3, "every prepared statement gets a name of its own"
    else:
        assert behind["prepare_threshold"] is None


# Bad settings, one per variable Settings reads: (variable, value, what the line says is accepted).
WHOLE = "a whole number"
BAD_VALUES = [
    ("DATABASE_URL", "mysql://app:secret@db/app", "its scheme is mysql://"),
    ("DIRECT_DATABASE_URL", "not a url", "it is not a URL; use postgresql://user:password@host"),
    ("WEB_CONCURRENCY", "lots", f"use {WHOLE} from 1 to 256, or auto"),
    ("REPLICAS", "0", f"use {WHOLE} of at least 1"),
    ("MAX_SURGE", "-1", f"use {WHOLE} of at least 0"),
    ("DB_POOL_SIZE", "five", f"use {WHOLE} of at least 1"),
    ("DB_MAX_OVERFLOW", "-1", f"use {WHOLE} of at least 0"),
    ("DB_POOL_TIMEOUT", "0", "use a number above 0"),
    ("DB_MAX_CONNECTIONS", "0", f"use {WHOLE} of at least 1"),
    ("DB_RESERVED_CONNECTIONS", "1.5", f"use {WHOLE} of at least 0"),
    ("PGBOUNCER", "maybe", "use true or false"),
    ("PGBOUNCER_MAX_CLIENT_CONN", "0", f"use {WHOLE} of at least 1"),
    ("PGBOUNCER_POOL_SIZE", "0", f"use {WHOLE} of at least 1"),
    ("QUEUE_BUDGET_MS", "0", f"use {WHOLE} from 1 to 60000"),
    ("QUEUE_BUDGET_MS", "-5", f"use {WHOLE} from 1 to 60000"),
    ("QUEUE_BUDGET_MS", "a while", f"use {WHOLE} from 1 to 60000"),
    ("ADMISSION_QUEUE", "-1", f"use {WHOLE} of at least 0, or unset"),
    ("SPARE_THREADS", "0", f"use {WHOLE} of at least 1"),
    ("RETRY_AFTER", "-1", f"use {WHOLE} of at least 0"),
    ("REQUEST_TIMEOUT", "0", "use a number above 0"),
    ("STATEMENT_TIMEOUT", "soon", "use a number above 0"),
    ("PORT", "70000", f"use {WHOLE} from 1 to 65535"),
    ("GUNICORN_TIMEOUT", "0", f"use {WHOLE} of at least 1"),
    ("GRACEFUL_TIMEOUT", "0", f"use {WHOLE} of at least 1"),
    ("KEEPALIVE", "0", f"use {WHOLE} of at least 1"),
    ("MAX_REQUESTS", "-1", f"use {WHOLE} of at least 0"),
    ("DRAIN_SECONDS", "-1", "use a number from 0 to 60"),
    ("MAX_REQUESTS_JITTER", "lots", f"use {WHOLE} of at least 0"),
    ("LOG_LEVEL", "loud", "use one of debug, info, warning, error, critical"),
    ("LOG_FORMAT", "yaml", "use one of json, text"),
    ("READINESS_TIMEOUT", "0", "use a number above 0"),
    ("BENCH_ENDPOINTS", "perhaps", "use true or false"),
    ("ENVIRONMENT", "staging", "use one of production, development"),
]


@pytest.mark.parametrize("password", sorted(EXAMPLE_PASSWORDS))
@pytest.mark.parametrize("variable", ["DATABASE_URL", "DIRECT_DATABASE_URL"])
def test_an_example_password_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, variable: str, password: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv(variable, f"postgresql://app:{password}@db.example:5432/app")
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"{variable} has the example password {password!r}")
    assert "ENVIRONMENT=development" in line
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings(Settings).environment == "development"


def test_settings_are_read_from_secret_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As Docker and Kubernetes mount secrets: one file per setting; the environment wins."""
    (tmp_path / "database_url").write_text(URL)
    (tmp_path / "db_pool_size").write_text("3")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("DB_POOL_SIZE", "4")
    settings = load_settings(Settings)
    assert settings.database_url == URL.replace("postgresql://", f"{DRIVERNAME}://")
    assert settings.db_pool_size == 4


def test_a_secrets_dir_that_is_not_a_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"SECRETS_DIR={tmp_path / 'missing'} is not accepted")


def test_every_variable_has_a_bad_value_below() -> None:
    assert {variable for variable, _, _ in BAD_VALUES} == {
        name.upper() for name in Settings.model_fields
    }


@pytest.mark.parametrize(
    ("variable", "value", "accepted"), BAD_VALUES, ids=[variable for variable, _, _ in BAD_VALUES]
)
def test_a_bad_value_is_one_line_naming_the_variable_the_value_and_what_is_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    [line] = str(refused.value).splitlines()
    shown = shlex.quote(value.replace(":secret@", ":***@"))  # as a shell would need it
    assert line.startswith(f"{variable}={shown} is not accepted")
    assert accepted in line


def test_each_bad_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DB_POOL_SIZE", "0")
    monkeypatch.setenv("PORT", "http")
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    assert str(refused.value).splitlines() == [
        "DB_POOL_SIZE=0 is not accepted; use a whole number of at least 1",
        "PORT=http is not accepted; use a whole number from 1 to 65535",
    ]


def test_a_password_never_shows_in_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cr3t word@db.example:port/app")
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    assert "s3cr3t" not in str(refused.value)
    assert str(refused.value).startswith("DATABASE_URL='postgresql://app:***@db.example:port/app'")


def test_a_missing_database_url_says_what_to_set() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    assert str(refused.value) == (
        "DATABASE_URL is not set; use postgresql://user:password@host:port/database"
    )


def test_the_plan_needs_no_database_url() -> None:
    assert load_settings(PlanSettings).capacity_plan().fits


@pytest.mark.parametrize(
    ("timeouts", "line"),
    [
        pytest.param(
            {"GRACEFUL_TIMEOUT": "10"},
            "GRACEFUL_TIMEOUT=10 is shorter than REQUEST_TIMEOUT=15: requests still running",
            id="graceful-below-request",
        ),
        pytest.param(
            {"REQUEST_TIMEOUT": str(defaults.GRACEFUL_TIMEOUT + 1)},
            f"GRACEFUL_TIMEOUT={defaults.GRACEFUL_TIMEOUT} is shorter than"
            f" REQUEST_TIMEOUT={defaults.GRACEFUL_TIMEOUT + 1}:",
            id="request-beyond-graceful",
        ),
        pytest.param(
            {"STATEMENT_TIMEOUT": "20"},
            "STATEMENT_TIMEOUT=20 exceeds REQUEST_TIMEOUT=15: a query would run on",
            id="statement-beyond-request",
        ),
    ],
)
def test_deadlines_that_do_not_nest_are_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, timeouts: dict[str, str], line: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    for variable, value in timeouts.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings(Settings)
    [message] = str(refused.value).splitlines()
    assert message.startswith(line)


def test_a_graceful_timeout_equal_to_the_request_deadline_is_enough() -> None:
    settings = Settings(database_url=URL, graceful_timeout=15, request_timeout=15)
    assert settings.graceful_timeout == 15


def test_the_default_deadlines_nest() -> None:
    settings = Settings(database_url=URL)
    assert settings.statement_timeout <= settings.request_timeout <= settings.graceful_timeout


def test_entry_points_exit_2_with_the_line_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("WEB_CONCURRENCY", "lots")
    with pytest.raises(SystemExit) as exited:
        settings_or_exit(Settings)
    assert exited.value.code == BAD_SETTINGS
    assert capsys.readouterr().err.splitlines() == [
        "WEB_CONCURRENCY=lots is not accepted; use a whole number from 1 to 256,"
        " or auto (one per CPU this process may use)"
    ]


# Reading settings must not load these: gunicorn's master and `python -m <package>.capacity`
# read settings and serve nothing. SQLAlchemy's URL parser comes with a database URL only.
FRAMEWORK_AND_DRIVERS = ("fastapi", "starlette", "asyncpg", "psycopg")
PROBE = """
import json, sys
from {{ cookiecutter.project_slug }} import capacity, settings

def loaded(*packages):
    return sorted(
        name for name in sys.modules for package in packages
        if name == package or name.startswith(package + ".")
    )

settings.PlanSettings().capacity_plan()
print(json.dumps(loaded(*sys.argv[1:], "sqlalchemy")))
settings.Settings(database_url="postgresql://app@db.example/app").capacity_plan()
print(json.dumps(loaded(*sys.argv[1:], "sqlalchemy.ext.asyncio")))
"""


def test_reading_settings_loads_no_web_framework_engine_or_driver() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *FRAMEWORK_AND_DRIVERS],
        env={"PATH": ""},  # nothing from the shell: every setting at its default
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    importing, with_a_url = map(json.loads, result.stdout.splitlines())
    assert importing == [], "importing settings and the capacity package, and planning"
    assert with_a_url == [], "reading a DATABASE_URL: SQLAlchemy's parser, not its asyncio layer"
