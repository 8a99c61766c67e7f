"""How the service says "not now": 503 when it is full, 504 when a deadline passed.

- OverloadedError (the admission gate is full) and a pool checkout that timed out are both 503
  with Retry-After: the client may retry, here or on another instance. Never a 500.
- So is a database that cannot be reached or dropped the connection: the instance cannot
  serve now, and /readyz takes it out of the load balancer meanwhile.
- A query PostgreSQL cancelled at statement_timeout, and a request past REQUEST_TIMEOUT, are
  504: the work was attempted and took too long.
"""

from __future__ import annotations

import logging
import socket

import anyio
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admission import OverloadedError

logger = logging.getLogger(__name__)

# PostgreSQL's SQLSTATE for "canceling statement due to statement timeout" (query_canceled).
QUERY_CANCELED = "57014"


def service_unavailable(retry_after: int, detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(retry_after)},
    )


def gateway_timeout(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status.HTTP_504_GATEWAY_TIMEOUT)


def sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE of a driver error: psycopg says `sqlstate`, asyncpg says `pgcode`."""
    original = error.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    cause = getattr(original, "__cause__", None)  # SQLAlchemy's asyncpg adapter wraps the error
    return code or getattr(cause, "sqlstate", None)


def install_overload_handlers(app: FastAPI, retry_after: int) -> None:
    """Map refusals and timeouts to 503 and 504."""

    async def overloaded(request: Request, error: Exception) -> JSONResponse:
        return service_unavailable(retry_after, "overloaded: retry later")

    async def pool_timeout(request: Request, error: Exception) -> JSONResponse:
        logger.warning("no database connection within the pool timeout: %s", error)
        return service_unavailable(retry_after, "no database connection available: retry later")

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DBAPIError)
        if sqlstate(error) == QUERY_CANCELED:
            return gateway_timeout("the query ran past statement_timeout")
        if error.connection_invalidated or isinstance(error, OperationalError | InterfaceError):
            logger.warning("database unavailable: %s", error.orig)
            return service_unavailable(retry_after, "database unavailable: retry later")
        raise error  # a bug, not a load problem: a 500 with its traceback in the log

    async def unreachable(request: Request, error: Exception) -> JSONResponse:
        logger.warning("database unreachable: %r", error)
        return service_unavailable(retry_after, "database unavailable: retry later")

    app.add_exception_handler(OverloadedError, overloaded)
    # asyncpg raises the socket's own errors when it cannot connect (SQLAlchemy passes them
    # on unwrapped): refused, reset, or a host name that does not resolve.
    app.add_exception_handler(ConnectionError, unreachable)
    app.add_exception_handler(socket.gaierror, unreachable)
    app.add_exception_handler(PoolTimeoutError, pool_timeout)
    app.add_exception_handler(DBAPIError, database_error)


class RequestDeadline:
    """ASGI middleware: a request that has not started its response within `seconds` gets 504.

    In the async variant the handler is cancelled (and its query with it). A sync handler's
    thread cannot be interrupted: the 504 goes out when the thread returns, which
    statement_timeout and the pool timeout bound.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            with anyio.fail_after(self.seconds):
                await self.app(scope, receive, send_tracking_start)
        except TimeoutError:
            if started:  # too late to change the answer: let the server close the connection
                raise
            logger.warning(
                "%s %s passed its %gs deadline", scope["method"], scope["path"], self.seconds
            )
            await gateway_timeout("the request ran past its deadline")(scope, receive, send)
