"""Settings from the environment: the one place where the service's tunables are read.

Field names are the environment variables, lowercased (DB_POOL_SIZE is `db_pool_size`), and
errors name the variable. Defaults that were answers at generation (the connection budget,
the port, the graceful timeout) come from defaults.py, which `copier update` regenerates;
the other defaults are the same in every generated service.

Settings check each value on its own, and the deadlines against each other; whether the
connection numbers fit together is the capacity plan's question (the capacity package),
asked by gunicorn.conf.py and by every worker as it starts.

Importing settings loads no web framework and no database driver, and SQLAlchemy only once a
database URL is parsed (for its URL parser): gunicorn's master and `python -m
{{ cookiecutter.project_slug }}.capacity` read settings, and serve nothing.

A bad value is reported by `load_settings()` as a SettingsError: one line per bad variable,
naming it, the value given and what is accepted. Entry points (gunicorn.conf.py, `python -m`,
the app factory, alembic) call `settings_or_exit()`, which prints those lines and exits with
BAD_SETTINGS, without a traceback.
"""

import os
import re
import shlex
import sys
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Literal, Self, TypeVar, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import defaults
from .capacity import DEFAULT_QUEUE_BUDGET_MS, DEFAULT_SPARE_THREADS, CapacityPlan, PlanInputs
from .capacity.wording import does_not_fit
from .cpus import available_cpus
from .defaults import DRIVER, DRIVERNAME

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# Schemes that mean "PostgreSQL, driver not said": libpq's and Heroku-style URLs.
PLAIN_SCHEMES = ("postgresql", "postgres")
URL_FORM = "postgresql://user:password@host:port/database"

# The passwords of the project's example environment files (.env.example and the deployment
# targets' *.env.example): a service must not run in production on one of them.
EXAMPLE_PASSWORDS = frozenset({"change-me", "PASSWORD"})
# Where Docker and Kubernetes put secrets as files: /run/secrets/database_url holds
# DATABASE_URL (an environment variable of the same name wins). SECRETS_DIR moves it.
DEFAULT_SECRETS_DIR = "/run/secrets"

# Exit statuses of the entry points: a setting is bad (2); the capacity plan does not fit (1).
BAD_SETTINGS = 2
PLAN_DOES_NOT_FIT = 1


class PlanSettings(BaseSettings):
    """Every setting but where the database is: enough for the capacity plan and gunicorn.

    `python -m {{ cookiecutter.project_slug }}.capacity` plans from these, so it runs
    without a DATABASE_URL. Building one never connects to anything.
    """

    model_config = SettingsConfigDict(
        alias_generator=str.upper,  # so errors say DB_POOL_SIZE, as the operator wrote it
        validate_by_name=True,  # and code can still say Settings(db_pool_size=...)
        validate_by_alias=True,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    # The connection budget: every worker has its own pool, every instance its own workers.
    # WEB_CONCURRENCY=auto: one worker per CPU of the container's quota (see cpus.py).
    web_concurrency: int = Field(default=defaults.WORKERS, ge=1, le=256)
    replicas: int = Field(default=defaults.REPLICAS, ge=1)
    max_surge: int = Field(default=defaults.MAX_SURGE, ge=0)
    db_pool_size: int = Field(default=defaults.POOL_SIZE, ge=1)
    db_max_overflow: int = Field(default=defaults.MAX_OVERFLOW, ge=0)
    db_pool_timeout: float = Field(default=defaults.POOL_TIMEOUT, gt=0)
    db_max_connections: int = Field(default=defaults.DB_MAX_CONNECTIONS, ge=1)
    db_reserved_connections: int = Field(default=defaults.DB_RESERVED_CONNECTIONS, ge=0)
    # PgBouncer in transaction pooling between the service and PostgreSQL: the engine prepares
    # no statements and sends no startup parameters PgBouncer would refuse (db.py), and the
    # plan checks the fleet against PgBouncer's max_client_conn and PgBouncer's server pool
    # against PostgreSQL. statement_timeout is then PgBouncer's to set (see pgbouncer.ini).
    pgbouncer: bool = defaults.PGBOUNCER
    pgbouncer_max_client_conn: int = Field(default=defaults.PGBOUNCER_MAX_CLIENT_CONN, ge=1)
    pgbouncer_pool_size: int = Field(default=defaults.PGBOUNCER_POOL_SIZE, ge=1)

    # Admission (admission.py): a database request waits at most QUEUE_BUDGET_MS for a
    # connection, and queues only while it can expect one within it; else 503 at once. Why
    # half a second: see capacity/plan.py.
    queue_budget_ms: int = Field(default=DEFAULT_QUEUE_BUDGET_MS, ge=1, le=60_000)
    # The most database requests a worker lets queue, whatever their expected wait: a memory
    # bound. Unset: 8 per connection (see capacity/plan.py).
    admission_queue: int | None = Field(default=None, ge=0)
    # With `def` handlers (psycopg): threads kept free for handlers that do not use the database.
    spare_threads: int = Field(default=DEFAULT_SPARE_THREADS, ge=1)
    # Seconds a client is told to wait (Retry-After) when the service is overloaded.
    retry_after: int = Field(default=1, ge=0)
    # A request that runs longer is answered 504; a query that runs longer is cancelled by
    # PostgreSQL, so it does not hold its connection.
    request_timeout: float = Field(default=15.0, gt=0)
    statement_timeout: float = Field(default=10.0, gt=0)

    # Gunicorn. Under uvicorn-worker the timeout is a heartbeat: a worker whose event loop
    # stalls this long is killed. It is not a request deadline.
    port: int = Field(default=defaults.PORT, ge=1, le=65535)
    gunicorn_timeout: int = Field(default=30, ge=1)
    # Time a worker gets to finish its requests after SIGTERM. The deployment files give the
    # whole instance a little longer than this before they kill it.
    graceful_timeout: int = Field(default=defaults.GRACEFUL_TIMEOUT, ge=1)
    # Seconds an idle keep-alive connection stays open; above the load balancer's would let it
    # reuse a connection the worker is closing.
    keepalive: int = Field(default=5, ge=1)
    # Seconds a worker goes on serving after SIGTERM, with /readyz answering 503, so a load
    # balancer that watches /readyz stops sending before the socket closes (see worker.py).
    # Kubernetes' preStop sleep does this before SIGTERM: 0 there.
    drain_seconds: float = Field(default=0, ge=0, le=60)
    # Recycling: a worker that has served MAX_REQUESTS requests (refusals do not count) is
    # replaced, after its replacement accepts connections (worker.py). Off (0) by default:
    # recycling costs a process start and a pool warm-up each time, and a leak is better caught
    # by the container's memory limit, which restarts the instance and says why. Jitter, so
    # that workers do not all retire at once; unset: a tenth of MAX_REQUESTS.
    max_requests: int = Field(default=0, ge=0)
    max_requests_jitter: int | None = Field(default=None, ge=0)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # One JSON object per line, for a log collector (logs.py); text for a person at a terminal
    # (`make dev` sets it).
    log_format: Literal["json", "text"] = "json"

    # /readyz answers 503 when the database does not answer within this many seconds.
    readiness_timeout: float = Field(default=2.0, gt=0)

    # The sleeping endpoints of api/bench.py, for `python -m bench`; never on in production.
    bench_endpoints: bool = False

    @field_validator("web_concurrency", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return available_cpus()
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _deadlines_nest(self) -> Self:
        """A query must give up before the request waiting for it does; otherwise the client
        gets its 504 while the query holds its connection on."""
        if self.statement_timeout > self.request_timeout:
            raise ValueError(
                f"STATEMENT_TIMEOUT={self.statement_timeout:g} exceeds"
                f" REQUEST_TIMEOUT={self.request_timeout:g}: a query would run on after its"
                " request was answered 504; use a STATEMENT_TIMEOUT of at most"
                f" {self.request_timeout:g}"
            )
        return self

    @model_validator(mode="after")
    def _requests_finish_within_the_graceful_timeout(self) -> Self:
        """A stopping worker kills what still runs at its graceful timeout: a request admitted
        just before SIGTERM must reach its own deadline (an answer, or 504) by then."""
        if self.graceful_timeout < self.request_timeout:
            raise ValueError(
                f"GRACEFUL_TIMEOUT={self.graceful_timeout} is shorter than"
                f" REQUEST_TIMEOUT={self.request_timeout:g}: requests still running when a"
                " stopping worker's graceful timeout ends would be cut off with no answer; use a"
                f" GRACEFUL_TIMEOUT of at least {self.request_timeout:g}, or a shorter"
                " REQUEST_TIMEOUT"
            )
        return self

    def capacity_plan(self) -> CapacityPlan:
        """The capacity plan these settings make, whether or not it fits."""
        return CapacityPlan(
            PlanInputs(
                driver=DRIVER,
                replicas=self.replicas,
                max_surge=self.max_surge,
                workers=self.web_concurrency,
                pool_size=self.db_pool_size,
                max_overflow=self.db_max_overflow,
                db_max_connections=self.db_max_connections,
                db_reserved_connections=self.db_reserved_connections,
                queue_budget_ms=self.queue_budget_ms,
                admission_queue=self.admission_queue,
                spare_threads=self.spare_threads,
                pgbouncer=self.pgbouncer,
                pgbouncer_max_client_conn=self.pgbouncer_max_client_conn,
                pgbouncer_pool_size=self.pgbouncer_pool_size,
            )
        )

    def plan_problems(self) -> list[str]:
        """Why the plan cannot work, and the variables it came from; empty when it fits."""
        problems = self.capacity_plan().problems()
        if not problems:
            return []
        return [
            *problems,
            f"(from WEB_CONCURRENCY={self.web_concurrency}, DB_POOL_SIZE={self.db_pool_size},"
            f" DB_MAX_OVERFLOW={self.db_max_overflow}, REPLICAS={self.replicas},"
            f" MAX_SURGE={self.max_surge}, DB_MAX_CONNECTIONS={self.db_max_connections},"
            f" DB_RESERVED_CONNECTIONS={self.db_reserved_connections}"
            + (
                f", PGBOUNCER_MAX_CLIENT_CONN={self.pgbouncer_max_client_conn},"
                f" PGBOUNCER_POOL_SIZE={self.pgbouncer_pool_size})"
                if self.pgbouncer
                else ")"
            ),
        ]


class Settings(PlanSettings):
    """All the settings of the service: the plan's, and where the database is."""

    database_url: str = Field(
        description="PostgreSQL URL; postgresql:// and postgres:// get this service's driver."
    )
    # PostgreSQL itself when DATABASE_URL goes through PgBouncer: migrations connect here, since
    # they need a session of their own (and no statement_timeout). Unset: DATABASE_URL.
    direct_database_url: str | None = None
    # development allows what production must not: the example files' passwords.
    environment: Literal["production", "development"] = "production"

    @field_validator("database_url", "direct_database_url")
    @classmethod
    def _use_our_driver(cls, value: str | None) -> str | None:
        """Accept plain PostgreSQL URLs and give them the driver this service is built on."""
        if value is None:
            return None
        from sqlalchemy.exc import ArgumentError  # with the parser: see _parse_url

        try:
            url = _parse_url(value)
        except (ArgumentError, ValueError) as error:
            raise ValueError(f"it is not a URL; use {URL_FORM}") from error
        if url.drivername in PLAIN_SCHEMES:
            url = url.set(drivername=DRIVERNAME)
        if url.drivername != DRIVERNAME:
            raise ValueError(
                f"its scheme is {url.drivername}://, but this service talks to PostgreSQL"
                f" through {DRIVERNAME}; use {URL_FORM}"
            )
        return url.render_as_string(hide_password=False)

    @model_validator(mode="after")
    def _no_example_password_in_production(self) -> Self:
        if self.environment == "development":
            return self
        for variable, url in (
            ("DATABASE_URL", self.database_url),
            ("DIRECT_DATABASE_URL", self.direct_database_url),
        ):
            password = _parse_url(url).password if url else None
            if password in EXAMPLE_PASSWORDS:
                raise ValueError(
                    f"{variable} has the example password {password!r} of the project's example"
                    " environment file; give the database user a real password and put it in the"
                    " URL, or set ENVIRONMENT=development on a developer's machine"
                )
        return self

    @property
    def recycle_jitter(self) -> int:
        """MAX_REQUESTS_JITTER, or a tenth of MAX_REQUESTS when it is unset."""
        if self.max_requests_jitter is not None:
            return self.max_requests_jitter
        return self.max_requests // 10

    @property
    def migration_database_url(self) -> str:
        """Where migrations connect: PostgreSQL itself (DIRECT_DATABASE_URL), else DATABASE_URL."""
        return self.direct_database_url or self.database_url

    @property
    def safe_database_url(self) -> str:
        """DATABASE_URL with the password masked, for logs."""
        return _parse_url(self.database_url).render_as_string(hide_password=True)


def _parse_url(value: str) -> "URL":
    """A database URL, parsed by SQLAlchemy as the engine will parse it.

    Imported here rather than at the top: PlanSettings has no URL, so planning alone
    (`python -m {{ cookiecutter.project_slug }}.capacity`) never loads SQLAlchemy.
    """
    from sqlalchemy.engine import make_url

    return make_url(value)


# Loading settings for an entry point: what is wrong, in words an operator acts on.

AnySettings = TypeVar("AnySettings", bound=PlanSettings)

# Accepted besides what the field's type says.
ALSO_ACCEPTED = {"web_concurrency": "auto (one per CPU this process may use)"}
# A password in a URL, which a message must never show.
PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@]*@")


class SettingsError(ValueError):
    """Settings the service cannot run with: one line per bad variable, no traceback needed."""


def load_settings(kind: type[AnySettings]) -> AnySettings:
    """Settings of `kind` from the environment and secret files, or a SettingsError saying why."""
    try:
        return kind(_secrets_dir=secrets_dir())
    except ValidationError as error:
        raise SettingsError(
            "\n".join(describe_error(kind, detail) for detail in error.errors())
        ) from None


def secrets_dir() -> Path | None:
    """SECRETS_DIR (which must be a folder), else /run/secrets where it exists: files named
    after settings, holding their values."""
    chosen = os.environ.get("SECRETS_DIR")
    if chosen is None:
        default = Path(DEFAULT_SECRETS_DIR)
        return default if default.is_dir() else None
    if not Path(chosen).is_dir():
        raise SettingsError(
            f"SECRETS_DIR={shlex.quote(chosen)} is not accepted: it is not a directory; use the"
            " folder where the secret files are mounted, or unset"
        )
    return Path(chosen)


def settings_or_exit(kind: type[AnySettings]) -> AnySettings:
    """For entry points: the settings, or their SettingsError on stderr and exit BAD_SETTINGS."""
    try:
        return load_settings(kind)
    except SettingsError as error:
        print(error, file=sys.stderr)
        raise SystemExit(BAD_SETTINGS) from None


def plan_or_exit(settings: PlanSettings) -> None:
    """For entry points that serve: exit PLAN_DOES_NOT_FIT, with the numbers, if it does not fit."""
    if problems := settings.plan_problems():
        print(does_not_fit(problems), file=sys.stderr)
        raise SystemExit(PLAN_DOES_NOT_FIT)


def describe_error(kind: type[PlanSettings], detail: ErrorDetails) -> str:
    """One of pydantic's errors as one line: the variable, the value, what is accepted."""
    message = detail["msg"].removeprefix("Value error, ")
    if not detail["loc"]:  # a rule across variables: its message names them and their values
        return message
    field_name = _field_name(kind, str(detail["loc"][0]))
    variable = field_name.upper()
    if detail["type"] == "missing":
        return f"{variable} is not set; use {accepted(kind, field_name)}"
    value = shlex.quote(PASSWORD_IN_URL.sub(r"\1***@", str(detail["input"])))
    if detail["type"] == "value_error":  # the service's own rule, which says what to use
        return f"{variable}={value} is not accepted: {message}"
    return f"{variable}={value} is not accepted; use {accepted(kind, field_name)}"


def accepted(kind: type[PlanSettings], field_name: str) -> str:
    """What a field accepts, from its type and bounds: "a whole number from 1 to 65535"."""
    field = kind.model_fields[field_name]
    choices = [_accepted_by_type(field), *filter(None, [ALSO_ACCEPTED.get(field_name)])]
    if _is_optional(field.annotation):
        choices.append("unset")
    return ", or ".join(choices)


def _accepted_by_type(field: FieldInfo) -> str:
    annotation = _without_none(field.annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "a whole number" + _bounds(field)
    if annotation is float:
        return "a number" + _bounds(field)
    return URL_FORM  # the only text settings are the database URLs


def _bounds(field: FieldInfo) -> str:
    """The bounds these settings use: at least, from .. to, above."""
    at_least = next((bound.ge for bound in field.metadata if isinstance(bound, Ge)), None)
    at_most = next((bound.le for bound in field.metadata if isinstance(bound, Le)), None)
    above = next((bound.gt for bound in field.metadata if isinstance(bound, Gt)), None)
    if at_least is not None:
        return f" of at least {at_least}" if at_most is None else f" from {at_least} to {at_most}"
    return "" if above is None else f" above {above}"


def _field_name(kind: type[PlanSettings], location: str) -> str:
    """The field an error is about, whether it came by variable name (DB_POOL_SIZE) or not."""
    if location in kind.model_fields:
        return location
    aliases = {field.alias: name for name, field in kind.model_fields.items()}
    return aliases.get(location, location.lower())


def _without_none(annotation: object) -> object:
    arguments = [argument for argument in get_args(annotation) if argument is not type(None)]
    return arguments[0] if _is_optional(annotation) else annotation


def _is_optional(annotation: object) -> bool:
    return get_origin(annotation) in (Union, UnionType) and type(None) in get_args(annotation)
