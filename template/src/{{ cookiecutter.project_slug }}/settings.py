"""Settings from the environment: the one place where the service's tunables are read.

Field names are the environment variables, lowercased (DB_POOL_SIZE is `db_pool_size`), and
errors name the variable. Defaults that were answers at generation (the connection budget,
the port, the graceful timeout) come from defaults.py, which `copier update` regenerates;
the other defaults are the same in every generated service.
"""

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from . import defaults
from .db import DRIVERNAME

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

    # The connection budget: every worker has its own pool.
    web_concurrency: int = Field(default=defaults.WORKERS, ge=1, le=256)
    db_pool_size: int = Field(default=defaults.POOL_SIZE, ge=1)
    db_max_overflow: int = Field(default=defaults.MAX_OVERFLOW, ge=0)
    db_pool_timeout: float = Field(default=defaults.POOL_TIMEOUT, gt=0)
    db_max_connections: int = Field(default=defaults.DB_MAX_CONNECTIONS, ge=1)
    db_reserved_connections: int = Field(default=defaults.DB_RESERVED_CONNECTIONS, ge=0)

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
    # Recycle workers now and then (jittered so they do not all restart at once).
    max_requests: int = Field(default=10_000, ge=0)
    max_requests_jitter: int = Field(default=1_000, ge=0)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"

    # /readyz answers 503 when the database does not answer within this many seconds.
    readiness_timeout: float = Field(default=2.0, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _use_our_driver(cls, value: str) -> str:
        """Accept plain PostgreSQL URLs and give them the driver this service is built on."""
        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as error:
            raise ValueError(
                "DATABASE_URL is not a valid URL; expected "
                "postgresql://user:password@host:port/database"
            ) from error
        if url.drivername in PLAIN_SCHEMES:
            url = url.set(drivername=DRIVERNAME)
        if url.drivername != DRIVERNAME:
            raise ValueError(
                f"DATABASE_URL has the scheme {url.drivername}://, but this service talks to "
                f"PostgreSQL through {DRIVERNAME}; use postgresql://user:password@host/database"
            )
        return url.render_as_string(hide_password=False)

    @model_validator(mode="after")
    def _fits_connection_budget(self) -> Self:
        """Refuse to start with pools that could open more connections than the server allows.

        This checks one instance. With several instances (and rolling deploys, when old and
        new instances overlap) the whole fleet must fit, which the deployment has to check.
        """
        if self.db_reserved_connections >= self.db_max_connections:
            raise ValueError(
                f"DB_RESERVED_CONNECTIONS ({self.db_reserved_connections}) must be below "
                f"DB_MAX_CONNECTIONS ({self.db_max_connections})"
            )
        if self.max_connections_used > self.connections_available:
            raise ValueError(
                "connection budget exceeded: WEB_CONCURRENCY x (DB_POOL_SIZE + DB_MAX_OVERFLOW)"
                f" = {self.web_concurrency} x ({self.db_pool_size} + {self.db_max_overflow})"
                f" = {self.max_connections_used} connections, but DB_MAX_CONNECTIONS"
                f" - DB_RESERVED_CONNECTIONS = {self.db_max_connections}"
                f" - {self.db_reserved_connections} = {self.connections_available} are available"
                f"; {self._largest_pool_that_fits()}"
            )
        return self

    def _largest_pool_that_fits(self) -> str:
        largest = self.connections_available // self.web_concurrency - self.db_max_overflow
        if largest >= 1:
            return f"the largest DB_POOL_SIZE that fits is {largest}"
        return "no DB_POOL_SIZE fits: lower DB_MAX_OVERFLOW or WEB_CONCURRENCY"

    @property
    def max_connections_used(self) -> int:
        """The most connections this instance can open: every worker's pool, full."""
        return self.web_concurrency * (self.db_pool_size + self.db_max_overflow)

    @property
    def connections_available(self) -> int:
        """What this service may use of the server's connections."""
        return self.db_max_connections - self.db_reserved_connections

    @property
    def safe_database_url(self) -> str:
        """DATABASE_URL with the password masked, for logs."""
        return make_url(self.database_url).render_as_string(hide_password=True)
