"""Settings from the environment: the one place where the service's tunables are read.

Field names are the environment variables, lowercased (DB_POOL_SIZE is `db_pool_size`), and
errors name the variable. Defaults that were answers at generation (the connection budget,
the port, the graceful timeout) come from defaults.py, which `copier update` regenerates;
the other defaults are the same in every generated service.

Settings check each value on its own; whether the values fit together is the capacity plan's
question (capacity.py), asked by gunicorn.conf.py and by every worker as it starts.
"""

from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from . import defaults
from .capacity import CapacityPlan, PlanInputs
from .cpus import available_cpus
from .db import DRIVER, DRIVERNAME

# Schemes that mean "PostgreSQL, driver not said": libpq's and Heroku-style URLs.
PLAIN_SCHEMES = ("postgresql", "postgres")


class Settings(BaseSettings):
    """Validated settings; building one never connects to anything."""

    model_config = SettingsConfigDict(
        alias_generator=str.upper,  # so errors say DB_POOL_SIZE, as the operator wrote it
        validate_by_name=True,  # and code can still say Settings(db_pool_size=...)
        validate_by_alias=True,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    database_url: str = Field(
        description="PostgreSQL URL; postgresql:// and postgres:// get this service's driver."
    )
    # PostgreSQL itself when DATABASE_URL goes through PgBouncer: migrations connect here, since
    # they need a session of their own (and no statement_timeout). Unset: DATABASE_URL.
    direct_database_url: str | None = None

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

    # Admission: database requests a worker lets wait for a connection beyond its pool; more
    # are answered 503 at once. Unset: half the worker's connections (see capacity.py).
    admission_queue: int | None = Field(default=None, ge=0)
    # Sync variant: threads kept free for handlers that do not use the database.
    spare_threads: int = Field(default=8, ge=1)
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

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url", "direct_database_url")
    @classmethod
    def _use_our_driver(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Accept plain PostgreSQL URLs and give them the driver this service is built on."""
        if value is None:
            return None
        variable = (info.field_name or "database_url").upper()
        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as error:
            raise ValueError(
                f"{variable} is not a valid URL; expected "
                "postgresql://user:password@host:port/database"
            ) from error
        if url.drivername in PLAIN_SCHEMES:
            url = url.set(drivername=DRIVERNAME)
        if url.drivername != DRIVERNAME:
            raise ValueError(
                f"{variable} has the scheme {url.drivername}://, but this service talks to "
                f"PostgreSQL through {DRIVERNAME}; use postgresql://user:password@host/database"
            )
        return url.render_as_string(hide_password=False)

    @model_validator(mode="after")
    def _deadlines_nest(self) -> Self:
        """A query must give up before the request waiting for it does; otherwise the client
        gets its 504 while the query holds its connection on."""
        if self.statement_timeout > self.request_timeout:
            raise ValueError(
                f"STATEMENT_TIMEOUT ({self.statement_timeout:g}) must not exceed"
                f" REQUEST_TIMEOUT ({self.request_timeout:g})"
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
        return make_url(self.database_url).render_as_string(hide_password=True)
