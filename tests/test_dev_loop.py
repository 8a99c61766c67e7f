"""`make dev`: the service with reload, on a throwaway PostgreSQL, picks up an edit without a restart.

A generated project of each driver, installed as its README says; the test starts `make dev`
without DATABASE_URL, writes an item (so the migrations ran on the throwaway server), adds a
handler to a router, and waits for the new route to answer. Stopping `make dev` stops uvicorn
and deletes the server.
"""

from __future__ import annotations

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

from tests.support.answers import DRIVERS
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


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda driver: f"db_driver={driver}")
def test_make_dev_serves_on_a_throwaway_database_and_reloads_an_edited_router(
    driver: str, tmp_path: Path, uv: str
) -> None:
    project = generate_and_install({"db_driver": driver}, tmp_path, uv)
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
