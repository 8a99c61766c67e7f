"""Overload answers: 503 with Retry-After when full, 504 past a deadline, never a 500."""

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from {{ cookiecutter.project_slug }}.admission import AdmissionGate
from {{ cookiecutter.project_slug }}.db import query_server
from {{ cookiecutter.project_slug }}.lifespan import CapacityError
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.overload import RequestDeadline
from {{ cookiecutter.project_slug }}.settings import Settings


def test_database_requests_that_cannot_be_served_in_time_are_refused_at_once(
    client: TestClient,
) -> None:
    gate = client.app.state.admission  # type: ignore[attr-defined]
    permits = gate.free
    gate.free = 0  # as if every connection were held by a request that runs for a minute
    gate.mean_hold = 60.0
    try:
        refused = client.get("/items/1")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {"detail": "overloaded: retry later"}
        assert client.get("/healthz").status_code == 200
        assert client.get("/capacity").status_code == 200
    finally:
        gate.free, gate.mean_hold = permits, 0.0
    assert client.get("/items/1").status_code == 404
    assert gate.free == gate.permits, "every admitted request gives its connection's permit back"
    assert client.get("/capacity").json()["admission"]["refused"] == 1


def test_while_the_gate_refuses_at_once_database_requests_are_refused_before_routing(
    client: TestClient,
) -> None:
    gate: AdmissionGate = client.app.state.admission  # type: ignore[attr-defined]
    permits, max_queue = gate.free, gate.max_queue
    entered: list[bool] = []
    acquire = gate.acquire

    async def counting_acquire() -> float:
        entered.append(True)  # the route's own admission: only requests routed get here
        return await acquire()

    gate.acquire = counting_acquire  # type: ignore[method-assign]
    gate.free, gate.max_queue = 0, 0  # every connection held and no queue: refuse at once
    try:
        refused = client.get("/items/1", headers={"X-Request-ID": "early-1"})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["X-Request-ID"] == "early-1"
        assert refused.json() == {"detail": "overloaded: retry later"}
        assert client.post("/items", json={"name": "x"}).status_code == 503
        assert client.get("/healthz").status_code == 200, "a route without the database"
        assert client.get("/no/such/path").status_code == 404
        assert client.delete("/items").status_code == 405, "no route for that method"
    finally:
        gate.free, gate.max_queue = permits, max_queue
    assert entered == [], "refused before the route ran"
    assert gate.stats.refused_queue_full == 2
    assert client.get("/items/1").status_code == 404
    assert entered == [True], "admitted by the route once the gate has room"
    del gate.acquire


def test_the_worker_applies_the_plan(client: TestClient, settings: Settings) -> None:
    plan = settings.capacity_plan()
    capacity = client.get("/capacity").json()
    assert capacity["admission"]["limit"] == plan.admission_limit
    assert capacity["admission"]["connections"] == plan.connections_per_worker
    assert capacity["admission"]["queue_limit"] == plan.admission_queue
    assert capacity["admission"]["queue_budget_ms"] == settings.queue_budget_ms
    assert capacity["threads"]["limit"] == plan.thread_limit
    assert capacity["peak_connections"] == plan.peak_connections


def failing_app(error: Exception, settings: Settings) -> TestClient:
    app = create_app(settings)

    @app.get("/fails")
    def fails() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


class DriverError(Exception):
    """A driver's error carrying a SQLSTATE, as psycopg's and asyncpg's do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def refused(sqlstate: str) -> DBAPIError:
    """What SQLAlchemy raises for a driver error that is neither Operational nor Interface."""
    return DBAPIError(None, None, DriverError(sqlstate))


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        pytest.param(PoolTimeoutError("QueuePool limit reached"), 503, "1", id="pool-timeout"),
        pytest.param(ConnectionRefusedError(111, "refused"), 503, "1", id="connection-refused"),
        pytest.param(
            OperationalError("SELECT", {}, Exception("gone")), 503, "1", id="connection-lost"
        ),
        pytest.param(TimeoutError(), 503, "1", id="connect-timeout"),
        pytest.param(refused("57P03"), 503, "1", id="starting-up"),
        pytest.param(refused("57P01"), 503, "1", id="admin-shutdown"),
        pytest.param(refused("53300"), 503, "1", id="too-many-clients"),
        pytest.param(refused("28P01"), 503, "1", id="wrong-password"),
        pytest.param(refused("3D000"), 503, "1", id="missing-database"),
        pytest.param(refused("08006"), 503, "1", id="connection-failure"),
        pytest.param(refused("40P01"), 503, "1", id="deadlock"),
        pytest.param(refused("57014"), 504, None, id="statement-timeout"),
        pytest.param(refused("42P01"), 500, None, id="undefined-table"),
        pytest.param(
            DBAPIError("SELECT", {}, Exception("other")), 500, None, id="other-database-error"
        ),
        pytest.param(FileNotFoundError(2, "no such file"), 500, None, id="other-os-error"),
    ],
)
def test_database_errors_get_the_right_status(
    settings: Settings, migrated: None, error: Exception, status: int, retry_after: str | None
) -> None:
    with failing_app(error, settings) as client:
        response = client.get("/fails")
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after


def test_a_request_past_its_deadline_gets_504() -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(5)
        await PlainTextResponse("late")(scope, receive, send)

    app = FastAPI()
    app.mount("/", RequestDeadline(slow, seconds=0.2))
    response = TestClient(app).get("/")
    assert response.status_code == 504


def test_a_timeout_raised_inside_the_app_is_not_the_deadline() -> None:
    async def times_out(scope: Scope, receive: Receive, send: Send) -> None:
        raise TimeoutError("the driver's connect timeout")

    app = FastAPI()
    app.mount("/", RequestDeadline(times_out, seconds=5))
    with pytest.raises(TimeoutError, match="connect timeout"):
        TestClient(app).get("/")


def test_every_connection_carries_the_statement_timeout(settings: Settings) -> None:
    # Straight to PostgreSQL, as here. Behind PgBouncer, PgBouncer sets it (pgbouncer.ini).
    direct = settings.model_copy(update={"pgbouncer": False})
    [(timeout,)] = query_server(direct, "SHOW statement_timeout")
    assert timeout == f"{settings.statement_timeout:g}s"


def test_a_worker_refuses_to_start_on_a_plan_that_does_not_fit(settings: Settings) -> None:
    over_budget = settings.model_copy(update={"web_concurrency": 50, "db_pool_size": 50})
    with (
        pytest.raises(CapacityError, match="connection budget exceeded"),
        TestClient(create_app(over_budget)),
    ):
        pass
