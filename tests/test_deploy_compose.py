"""The docker-compose target's files: compose.yaml passes the Compose specification and docker
compose itself, and its numbers agree with the answers and with each other.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import Case, Rendered, cases, env_file, run, silent_success, tool


def seconds(duration: str) -> int:
    """A compose duration such as "40s" or "1m30s", in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(f"{n}{u}" for n, u in parts) == duration, f"unexpected duration {duration!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


@pytest.fixture
def compose_project(request: pytest.FixtureRequest, render: Any, tmp_path: Path) -> Rendered:
    """A copy of the project with .env made from .env.example, as its README says to."""
    project = render(request.param)
    copy = tmp_path / project.path.name
    shutil.copytree(project.path, copy)
    shutil.copy(copy / ".env.example", copy / ".env")
    return Rendered(copy, project.answers)


def compose_model(project: Rendered) -> dict[str, Any]:
    """The stack as docker compose resolves it (anchors merged, .env read)."""
    result = run([tool("docker-compose"), "-f", "compose.yaml", "config", "--format", "json"], cwd=project.path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", cases("docker-compose"))
def test_the_compose_file_passes_the_compose_specification(case: Case, render: Any) -> None:
    project = render(case)
    command = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"]
    result = run(command, cwd=project.path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("compose_project", cases("docker-compose"), indirect=True)
def test_docker_compose_accepts_the_stack_with_the_example_environment(compose_project: Rendered) -> None:
    silent_success(run([tool("docker-compose"), "-f", "compose.yaml", "config", "-q"], cwd=compose_project.path))


@pytest.mark.parametrize("compose_project", cases("docker-compose"), indirect=True)
def test_the_service_starts_after_postgres_is_healthy_and_the_migration_succeeded(
    compose_project: Rendered,
) -> None:
    services = compose_model(compose_project)["services"]
    assert set(services) == {"postgres", "migrate", "app"} | ({"pgbouncer"} if compose_project.pgbouncer else set())
    postgres, migrate, app = services["postgres"], services["migrate"], services["app"]
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    assert any(volume["type"] == "volume" for volume in postgres["volumes"]), "PostgreSQL keeps its data in a volume"
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["image"] == app["image"], "the migration runs from the service's own image"
    assert "/healthz" in " ".join(app["healthcheck"]["test"])
    assert app["read_only"] is True
    assert app["cap_drop"] == ["ALL"]
    if compose_project.pgbouncer:
        pgbouncer = services["pgbouncer"]
        assert app["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
        assert pgbouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "pgbouncer" not in migrate["depends_on"], "migrations go to PostgreSQL itself"
        assert "pg_isready" in pgbouncer["healthcheck"]["test"]
        assert pgbouncer["read_only"] is True
        assert pgbouncer["cap_drop"] == ["ALL"]
        assert pgbouncer["stop_signal"] == "SIGINT", "PgBouncer's safe shutdown"
        assert "ports" not in pgbouncer, "only the stack's network reaches PgBouncer"
        [config] = pgbouncer["volumes"]
        assert (config["source"], config["target"]) == (
            str(compose_project.path / "pgbouncer.ini"),
            "/etc/pgbouncer/pgbouncer.ini",
        )
        assert config["read_only"] is True
        assert pgbouncer["entrypoint"][-1].endswith("exec pgbouncer /etc/pgbouncer/pgbouncer.ini")


@pytest.mark.parametrize("case", cases("docker-compose"))
def test_the_compose_file_holds_no_secret(case: Case, render: Any) -> None:
    """Credentials come from .env at run time; the compose file only names it."""
    project = render(case)
    stack = yaml.safe_load((project.path / "compose.yaml").read_text())
    for name, service in stack["services"].items():
        environment = service.get("environment", {})
        assert not {"DATABASE_URL", "POSTGRES_PASSWORD"} & set(environment), f"{name} has a secret inline"
    example = (project.path / ".env.example").read_text()
    assert "DATABASE_URL=postgresql://" in example, "the service gets a plain postgresql:// URL"
    assert ".env" in (project.path / ".gitignore").read_text().splitlines()
    urls = env_file(project.path / ".env.example")
    if project.pgbouncer:
        assert "@pgbouncer:6432/" in urls["DATABASE_URL"], "the service goes through PgBouncer"
        assert "@postgres:5432/" in urls["DIRECT_DATABASE_URL"], "migrations go to PostgreSQL itself"
    else:
        assert "@postgres:5432/" in urls["DATABASE_URL"]
        assert "DIRECT_DATABASE_URL" not in urls


@pytest.mark.parametrize("compose_project", cases("docker-compose"), indirect=True)
def test_the_numbers_agree_across_the_compose_files(compose_project: Rendered) -> None:
    project = compose_project
    services = compose_model(project)["services"]
    app, postgres = services["app"], services["postgres"]
    port, graceful = project.number("http_port"), project.number("graceful_timeout")
    defaults = project.defaults()

    assert f"max_connections={project.number('db_max_connections')}" in postgres["command"]
    assert defaults["DB_MAX_CONNECTIONS"] == project.number("db_max_connections")

    assert [(p["target"], int(p["published"])) for p in app["ports"]] == [(port, port)]
    assert app["environment"]["PORT"] == str(port) == str(defaults["PORT"])
    assert project.dockerfile_exposes() == [port]
    assert f"127.0.0.1:{port}/healthz" in " ".join(app["healthcheck"]["test"])

    assert app["environment"]["GRACEFUL_TIMEOUT"] == str(graceful) == str(defaults["GRACEFUL_TIMEOUT"])
    assert seconds(app["stop_grace_period"]) > graceful

    if project.pgbouncer:
        host, port = project.pgbouncer_ini()["databases"]["*"].split()[:2]
        assert (host, port) == ("host=postgres", "port=5432"), "PgBouncer reaches the stack's PostgreSQL"
        assert project.pgbouncer_ini()["pgbouncer"]["listen_port"] == "6432"
