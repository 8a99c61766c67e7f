"""The systemd target's unit: systemd-analyze verifies it and rates its sandbox OK, gunicorn
started as the unit says notifies systemd when it is ready, and the numbers agree.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import Case, Rendered, cases, env_file, run, silent_success, tool
from tests.support.processes import answers_200, free_port, wait_until

# `systemd-analyze security --offline=yes` rated the unit 1.1 ("OK") with systemd 252; what it
# cannot have (PrivateNetwork, IPAddressDeny) a service talking to PostgreSQL needs.
SYSTEMD_EXPOSURE_AT_MOST = 1.5


@dataclass(frozen=True)
class Unit:
    """A rendered unit, and the project installed the way deploy/systemd/README.md says, under a prefix."""

    source: Path  # the unit as rendered
    installed: Path  # the same unit with /opt/<slug> moved under the prefix
    prefix: Path
    project: Rendered

    @property
    def app(self) -> Path:
        return self.prefix / "opt" / self.project.slug


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every Key=value of a unit file (all sections), in order, values of repeated keys together."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_environment(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for value in unit_settings(path).get("Environment", []) for item in value.split())


@pytest.fixture(scope="module")
def unit(request: pytest.FixtureRequest, render: Any, tmp_path_factory: pytest.TempPathFactory, uv: str) -> Unit:
    """Steps 2 of the README (code in /opt/<slug>, a virtual environment with the project in
    it), with /opt under a temporary prefix: the unit's ExecStart then names a real gunicorn."""
    project = render(request.param)
    prefix = tmp_path_factory.mktemp("systemd-root")
    app = prefix / "opt" / project.slug
    app.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "gunicorn.conf.py", "alembic.ini", "src", "migrations"):
        source = project.path / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, app / name)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(app / ".venv")],
        [uv, "pip", "install", "--quiet", "--python", str(app / ".venv" / "bin" / "python"), str(app)],
    ):
        result = run(command, cwd=app, env=env)
        assert result.returncode == 0, result.stderr
    source = project.path / "deploy" / "systemd" / f"{project.slug}.service"
    text = source.read_text()
    assert "/opt/" in text
    installed = prefix / "units" / source.name
    installed.parent.mkdir()
    # Only the install location moves: the same unit, every other byte as rendered.
    installed.write_text(text.replace(f"/opt/{project.slug}", str(app)))
    return Unit(source, installed, prefix, project)


@pytest.mark.parametrize("unit", cases("systemd"), indirect=True)
def test_systemd_analyze_verify_reports_nothing(unit: Unit) -> None:
    exec_start = shlex.split(unit_settings(unit.installed)["ExecStart"][0])
    # The venv's python runs `-m <slug>`, which resolves WEB_CONCURRENCY=auto and execs gunicorn.
    assert Path(exec_start[0]) == unit.app / ".venv" / "bin" / "python"
    assert exec_start[1:] == ["-m", unit.project.slug]
    assert os.access(exec_start[0], os.X_OK)
    silent_success(run([tool("systemd-analyze"), "verify", str(unit.installed)], cwd=unit.prefix))


@pytest.mark.parametrize("case", cases("systemd"))
def test_systemd_analyze_security_rates_the_sandbox_ok(case: Case, render: Any) -> None:
    project = render(case)
    unit_file = project.path / "deploy" / "systemd" / f"{project.slug}.service"
    result = run([tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(unit_file)], cwd=project.path)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= SYSTEMD_EXPOSURE_AT_MOST, result.stdout


@pytest.mark.boot
# PgBouncer changes nothing here but the example's URLs, which this test replaces: not booted again.
@pytest.mark.parametrize("unit", [case for case in cases("systemd") if not case.values[0].pgbouncer], indirect=True)
def test_gunicorn_notifies_systemd_when_it_is_ready_under_the_units_settings(
    unit: Unit, postgres: Any, tmp_path: Path
) -> None:
    """Type=notify holds `systemctl start` until READY=1: gunicorn must send it, started as
    ExecStart says, in WorkingDirectory, with the unit's Environment= and the example file."""
    settings = unit_settings(unit.installed)
    assert settings["Type"] == ["notify"]
    environment = {
        **unit_environment(unit.installed),
        **env_file(unit.source.with_name(f"{unit.project.slug}.env.example")),
    }
    database = f"notify_{unit.project.answers['db_driver']}_{unit.project.number('http_port')}"
    environment["DATABASE_URL"] = postgres.create_database(database)
    environment["PORT"] = str(free_port())  # the unit's port may be taken on a test machine
    notify, log = tmp_path / "notify.sock", tmp_path / "gunicorn.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, log.open("wb") as sink:
        listener.bind(str(notify))
        listener.settimeout(60)
        env = {"PATH": os.environ["PATH"], "NOTIFY_SOCKET": str(notify), **environment}
        process = subprocess.Popen(
            shlex.split(settings["ExecStart"][0]),
            cwd=settings["WorkingDirectory"][0],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        try:
            message = listener.recv(4096).decode()
            assert "READY=1" in message.splitlines()
            ready = f"http://127.0.0.1:{environment['PORT']}/readyz"
            assert wait_until(lambda: answers_200(ready, timeout=2), timeout=30, interval=0.2), log.read_text()
        finally:
            # What KillSignal=SIGTERM does; TimeoutStopSec must leave gunicorn enough time.
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=int(settings["TimeoutStopSec"][0].removesuffix("s")))
    assert code == 0, log.read_text()


@pytest.mark.parametrize("case", cases("systemd"))
def test_the_numbers_agree_across_the_systemd_files(case: Case, render: Any) -> None:
    project = render(case)
    folder = project.path / "deploy" / "systemd"
    unit_file = folder / f"{project.slug}.service"
    settings = unit_settings(unit_file)
    environment = unit_environment(unit_file)
    port, graceful = project.number("http_port"), project.number("graceful_timeout")
    defaults = project.defaults()

    assert int(environment["PORT"]) == port == defaults["PORT"]
    assert int(environment["GRACEFUL_TIMEOUT"]) == graceful == defaults["GRACEFUL_TIMEOUT"]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert int(settings["TimeoutStopSec"][0].removesuffix("s")) > graceful
    assert ("pgbouncer.service" in settings["After"][0].split()) is project.pgbouncer, "after PgBouncer, if any"
    assert settings["Restart"] == ["on-failure"]
    assert settings["User"] == [project.slug]
    assert settings["EnvironmentFile"] == [f"/etc/{project.slug}/{project.slug}.env"]
    # The example environment file repeats the tunables' defaults, commented out.
    example = (folder / f"{project.slug}.env.example").read_text()
    for variable, answer in (
        ("WEB_CONCURRENCY", "workers"),
        ("DB_POOL_SIZE", "pool_size"),
        ("DB_MAX_OVERFLOW", "max_overflow"),
        ("DB_MAX_CONNECTIONS", "db_max_connections"),
        ("DB_RESERVED_CONNECTIONS", "db_reserved_connections"),
    ):
        assert f"# {variable}={project.number(answer)}\n" in example
