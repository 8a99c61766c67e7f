"""How the service says "not now": 503 when it is full, 504 when a deadline passed.

- A pool checkout that timed out is a 503 with Retry-After: the client may retry, here or on
  another instance. Never a 500. (A request the admission gate refuses gets its 503 from
  AdmissionRoute before any handler runs: see admission.py.)
- So is every way the database refuses or fails to answer, at connect time or mid-query: the
  instance cannot serve now, and /readyz takes it out of the load balancer meanwhile.
- A query PostgreSQL cancelled at statement_timeout, and a request past REQUEST_TIMEOUT, are
  504: the work was attempted and took too long. Only the service's own deadline is that 504:
  a timeout raised inside the app (the driver's connect timeout) is a database that did not
  answer, a 503.
- Anything else the database says (a syntax error, a missing table, a violated constraint) is
  a bug, not a load problem: a 500, with its traceback in the log.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

import anyio
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import DEADLINE_PASSED, STATEMENT_TIMEOUT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What the client gets: a 503 comes with Retry-After, a 504 without."""

    status: int
    detail: str


UNAVAILABLE = Answer(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable: retry later")
NO_CONNECTION = Answer(
    status.HTTP_503_SERVICE_UNAVAILABLE, "no database connection available: retry later"
)
ROLLED_BACK = Answer(
    status.HTTP_503_SERVICE_UNAVAILABLE,
    "the transaction conflicted with another and was rolled back: retry later",
)
QUERY_TIMEOUT = Answer(status.HTTP_504_GATEWAY_TIMEOUT, "the query ran past statement_timeout")

# THE table: what each failure of the database becomes. By SQLSTATE (a whole code, else its
# two-character class; both drivers report it, at connect time and mid-query), then by the
# exception's type for the failures that carry none. Whatever is in neither is a 500.
BY_SQLSTATE: dict[str, Answer] = {
    "08": UNAVAILABLE,  # connection exception: the connection could not be made, or broke
    "28": UNAVAILABLE,  # invalid authorization: wrong password, no pg_hba.conf entry, no role
    "3D000": UNAVAILABLE,  # invalid catalog name: the database does not exist (yet, or now)
    "53": UNAVAILABLE,  # insufficient resources: too many clients, out of memory, disk full
    "57P01": UNAVAILABLE,  # admin shutdown: a restart, or pg_terminate_backend
    "57P02": UNAVAILABLE,  # crash shutdown: another server process crashed
    "57P03": UNAVAILABLE,  # cannot connect now: starting up, shutting down, in recovery
    "57P04": UNAVAILABLE,  # database dropped
    "57P05": UNAVAILABLE,  # idle session timeout: the server closed the connection
    "58": UNAVAILABLE,  # system error: an I/O error on the server
    # Read-only transaction: a write reached a standby (after a failover, before the address
    # moved) or a database set read-only for maintenance. Writes fail now, not forever.
    "25006": UNAVAILABLE,
    # Serialization failure and deadlock: PostgreSQL rolled the whole transaction back, so
    # the same request is safe to send again and will likely succeed; it was nobody's bug.
    "40001": ROLLED_BACK,
    "40P01": ROLLED_BACK,
    "57014": QUERY_TIMEOUT,  # query canceled: statement_timeout
}
#   Not in the table, by how the error arose:
#   any DBAPIError raised while connecting, whatever its SQLSTATE         503 UNAVAILABLE
#     (a role without CONNECT, a database not accepting connections: the instance has no
#     connection to serve with; mark_connect_failures() below marks these invalidated)
#   sqlalchemy.exc.TimeoutError (no pooled connection in pool_timeout)   503 NO_CONNECTION
#   DBAPIError: OperationalError, InterfaceError, or the connection was   503 UNAVAILABLE
#     invalidated (psycopg's connect failures carry no SQLSTATE; a lost connection)
#   ConnectionError, socket.gaierror, OSError of an unreachable network   503 UNAVAILABLE
#     (asyncpg raises the socket's own errors, unwrapped: refused, reset, no such host)
#   TimeoutError raised inside the app (asyncpg's connect timeout: the    503 UNAVAILABLE
#     server accepted the connection and never answered)
UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})


def sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE of a driver error: psycopg says `sqlstate`, asyncpg says `pgcode`."""
    original = error.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    cause = getattr(original, "__cause__", None)  # SQLAlchemy's asyncpg adapter wraps the error
    return code or getattr(cause, "sqlstate", None)


def database_answer(error: DBAPIError) -> Answer | None:
    """The table's answer to a driver error; None for a bug."""
    code = sqlstate(error) or ""
    answer = BY_SQLSTATE.get(code) or BY_SQLSTATE.get(code[:2])
    if answer is not None:
        return answer
    if error.connection_invalidated or isinstance(error, OperationalError | InterfaceError):
        return UNAVAILABLE
    return None


def mark_connect_failures(engine: Engine) -> None:
    """Mark every driver error raised while `engine` opens a connection as invalidated.

    psycopg raises OperationalError for every failed connect, but SQLAlchemy's asyncpg adapter
    raises the class of the server's SQLSTATE (a refused CONNECT privilege is a
    ProgrammingError), and SQLAlchemy invalidates only what its dialect recognises as a lost
    connection. Whatever the server said, a connect that failed left no connection to serve
    with: the table's last rule makes that a 503, whichever driver raised it.
    """

    @event.listens_for(engine, "handle_error")
    def while_connecting(context: ExceptionContext) -> None:
        if context.connection is None:  # SQLAlchemy's mark of a failure to connect
            context.is_disconnect = True


def respond(answer: Answer, retry_after: int) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if answer.status == 503 else None
    return JSONResponse({"detail": answer.detail}, status_code=answer.status, headers=headers)


def install_overload_handlers(app: FastAPI, retry_after: int) -> None:
    """Map refusals and timeouts to 503 and 504, by the table above."""

    async def pool_timeout(request: Request, error: Exception) -> JSONResponse:
        logger.warning("no database connection within the pool timeout: %s", error)
        return respond(NO_CONNECTION, retry_after)

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DBAPIError)
        answer = database_answer(error)
        if answer is None:
            raise error  # a bug, not a load problem: a 500 with its traceback in the log
        if answer.status == 503:
            logger.warning("%s: %s", answer.detail, error.orig)
        elif answer is QUERY_TIMEOUT:
            STATEMENT_TIMEOUT.inc()
        return respond(answer, retry_after)

    async def unreachable(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, OSError)
        if not isinstance(error, ConnectionError | socket.gaierror | TimeoutError) and (
            error.errno not in UNREACHABLE_ERRNOS
        ):
            raise error  # a file the app could not open, say: a bug
        logger.warning("database unreachable: %r", error)
        return respond(UNAVAILABLE, retry_after)

    app.add_exception_handler(OSError, unreachable)
    app.add_exception_handler(PoolTimeoutError, pool_timeout)
    app.add_exception_handler(DBAPIError, database_error)


class RequestDeadline:
    """ASGI middleware: a request that has not started its response within `seconds` gets 504.

    An `async def` handler is cancelled (and its query with it). A `def` handler's thread
    cannot be interrupted: the 504 goes out when the thread returns, which
    statement_timeout and the pool timeout bound.

    Only this deadline's own expiry is the 504. A TimeoutError the app raises (a connect
    timeout) passes on to the exception handlers like any other error.
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

        with anyio.move_on_after(self.seconds) as deadline:
            await self.app(scope, receive, send_tracking_start)
        if not deadline.cancelled_caught:
            return
        if started:  # too late to change the answer: let the server close the connection
            raise TimeoutError(f"the response ran past its {self.seconds:g}s deadline")
        DEADLINE_PASSED.inc()
        logger.warning(
            "%s %s passed its %gs deadline", scope["method"], scope["path"], self.seconds
        )
        response = JSONResponse(
            {"detail": "the request ran past its deadline"},
            status_code=status.HTTP_504_GATEWAY_TIMEOUT,
        )
        await response(scope, receive, send)
