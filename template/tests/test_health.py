"""Probes: liveness never needs the database, readiness answers for it."""

import time

from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings


def test_healthz_is_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_without_a_database_the_app_starts_live_but_not_ready(
    unreachable_database_url: str,
) -> None:
    # Starting opens no connection, so the app starts; liveness stays 200, readiness says 503.
    settings = Settings(database_url=unreachable_database_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable"}


def test_readyz_gives_up_after_the_readiness_timeout(silent_database_url: str) -> None:
    settings = Settings(database_url=silent_database_url, readiness_timeout=0.5, db_pool_timeout=1)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 1.5
