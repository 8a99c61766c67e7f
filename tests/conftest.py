"""Shared fixtures: the throwaway PostgreSQL server and the tools the boot tests need.

The server comes from template/tests/postgres_server.py, the very file every
generated service gets, loaded by path: one source of truth for both.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
POSTGRES_SERVER = REPO / "template" / "tests" / "postgres_server.py"


def load_postgres_server() -> ModuleType:
    """template/tests/postgres_server.py as a module (it is plain Python, no Jinja)."""
    name = "headroom_postgres_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, POSTGRES_SERVER)
    assert spec is not None, f"cannot load {POSTGRES_SERVER}"
    assert spec.loader is not None, f"cannot load {POSTGRES_SERVER}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the session; each test makes its own databases."""
    server_module = load_postgres_server()
    try:
        with server_module.throwaway_postgres(max_connections=100) as server:
            yield server
    except server_module.PostgresUnavailableError as error:  # raised while starting, never by tests
        pytest.fail(f"these tests need PostgreSQL: {error}", pytrace=False)


@pytest.fixture(scope="session")
def uv() -> str:
    """The uv executable, which installs the generated services."""
    found = shutil.which("uv")
    if found is None:
        pytest.fail("these tests need uv to install generated services: `pip install uv`", pytrace=False)
    return found
