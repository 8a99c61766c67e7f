"""`make dev`: the service with reload, on a throwaway PostgreSQL, picks up an edit without a restart.

A generated project of each driver, installed as its README says; the test starts `make dev`
without DATABASE_URL, writes an item (so the migrations ran on the throwaway server), adds a
handler to a router, and waits for the new route to answer. Stopping `make dev` stops uvicorn
and deletes the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.answers import DRIVERS, TARGETS
from tests.support.deploy import tool
from tests.support.generation import generate
from tests.support.processes import free_port
from tests.support.services import generate_and_install, service_env

pytestmark = pytest.mark.boot

STARTUP_TIMEOUT = 90  # seconds: uv syncs the environment, initdb, migrations, uvicorn
RELOAD_TIMEOUT = 30
NEW_HANDLER = """

@router.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "reloaded"}
"""


def answer(url: str, deadline: float, process: subprocess.Popen[str]) -> httpx.Response:
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert process.poll() is None, f"make dev exited {process.returncode}"
            assert time.monotonic() < deadline, f"no answer from {url}"
            time.sleep(0.3)


# Targets without a database of their own, where `make dev` starts a throwaway one.
THROWAWAY_CASES = [
    {"db_driver": driver, "deployment_target": target}
    for driver, target in zip(DRIVERS, [t for t in TARGETS if t != "docker-compose"], strict=True)
]


@pytest.mark.parametrize("answers", THROWAWAY_CASES, ids=lambda a: f"{a['db_driver']}-{a['deployment_target']}")
def test_make_dev_serves_on_a_throwaway_database_and_reloads_an_edited_router(
    answers: dict[str, str], tmp_path: Path, uv: str
) -> None:
    project = generate_and_install(answers, tmp_path, uv)
    make = shutil.which("make")
    assert make is not None, "make is missing (Debian: apt-get install make)"
    port = free_port()
    env = service_env(PORT=str(port), UV=uv, UV_PYTHON_DOWNLOADS="never")
    for name in ("DATABASE_URL", "VIRTUAL_ENV"):
        env.pop(name, None)
    log = tmp_path / "dev.log"
    with log.open("w") as sink:
        dev = subprocess.Popen(
            [make, "dev"], cwd=project.path, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert answer(f"{url}/healthz", time.monotonic() + STARTUP_TIMEOUT, dev).status_code == 200
        created = httpx.post(f"{url}/items", json={"name": "in development"}, timeout=10)
        assert created.status_code == 201, created.text
        assert httpx.get(f"{url}/hello", timeout=5).status_code == 404
        router = next((project.path / "src").glob("*/api/health.py"))
        router.write_text(router.read_text() + NEW_HANDLER)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while (hello := answer(f"{url}/hello", deadline, dev)).status_code == 404:
            assert time.monotonic() < deadline, f"the edit was not picked up:\n{log.read_text()}"
            time.sleep(0.3)
        assert hello.json() == {"hello": "reloaded"}
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        try:
            code = dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            raise
    said = log.read_text()
    assert code in (0, -signal.SIGINT), f"make dev exited {code}:\n{said}"  # make dies of the SIGINT it got
    assert "Traceback" not in said
    database_port = int(re.search(r"a throwaway PostgreSQL at postgresql://\S+?:(\d+)/", said).group(1))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", database_port)) != 0, "the throwaway PostgreSQL still runs"


# With compose as the target, `make dev` uses compose's own PostgreSQL (no image can be pulled
# here, so the stack itself is not started): compose.dev.yaml publishes it on loopback only,
# and dev.py asks for the .env it takes the credentials from before it starts anything.


def test_compose_dev_publishes_postgres_on_loopback_only(tmp_path: Path) -> None:
    generated = generate("copier", {"deployment_target": "docker-compose"}, tmp_path)
    assert generated.project is not None, generated.error
    shutil.copy(generated.project / ".env.example", generated.project / ".env")
    command = [tool("docker-compose"), "-f", "compose.yaml", "-f", "compose.dev.yaml", "config", "--format", "json"]
    result = subprocess.run(command, cwd=generated.project, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["ports"] == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 5432, "published": "5432", "protocol": "tcp"}
    ]
    assert [service for service in services.values() if "ports" in service and service is not services["postgres"]] == [
        services["app"]
    ], "only the app was published before; compose.dev.yaml adds PostgreSQL on loopback alone"


def test_compose_dev_without_env_file_says_what_to_do(tmp_path: Path, uv: str) -> None:
    project = generate_and_install({"deployment_target": "docker-compose", "db_driver": DRIVERS[0]}, tmp_path, uv)
    env = service_env()
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [project.bin("python"), "dev.py"], cwd=project.path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "dev: compose's PostgreSQL takes its credentials from .env: copy it first"
