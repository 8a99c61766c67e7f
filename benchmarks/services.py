"""The services under test: generated, installed, and served one at a time by gunicorn."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import children
from tests.generation import generate
from tests.services import Project

HERE = Path(__file__).resolve().parent
ANSWERS = {"project_name": "Bench Service"}  # every other answer at its default
PACKAGE = "bench_service"
STARTUP_TIMEOUT = 60
# The environment of a service is ours minus what would steer it.
STEERING = ("VIRTUAL_ENV", "PYTHONPATH", "DATABASE_URL", "PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")


def run(command: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=dict(env or os.environ), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def build(driver: str, workdir: Path) -> Project:
    """Generate the variant with copier and install it (with its bench extra) with uv."""
    generated = generate("copier", {**ANSWERS, "db_driver": driver}, workdir / driver)
    if generated.project is None:
        raise RuntimeError(f"copier refused the {driver} variant: {generated.error}")
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to install the generated services: pip install uv")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    run([uv, "venv", "--quiet", "--python", sys.executable, ".venv"], generated.project, env)
    install = [uv, "pip", "install", "--quiet", "--python", ".venv/bin/python"]
    run([*install, "-e", ".[bench]"], generated.project, env)
    return Project(generated.project, driver)


def service_env(**overrides: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in STEERING and not k.startswith(("DB_", "BENCH_"))}
    return {**inherited, **overrides}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running gunicorn: its master's pid, URL and log."""

    name: str
    pid: int
    url: str
    log: Path
    command: str


@contextmanager
def serve(
    name: str, project: Project, args: list[str], env: Mapping[str, str], cpu: int | None, logs: Path
) -> Iterator[Server]:
    """Run gunicorn from the project's folder (pinned to `cpu`) until the block ends."""
    port = free_port()
    command = [project.bin("gunicorn"), *args, "--bind", f"127.0.0.1:{port}"]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=project.path, env=dict(env), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    shown = " ".join(["taskset", "-c", str(cpu)] if cpu is not None else []) + f" gunicorn {' '.join(args)}"
    server = Server(name, process.pid, f"http://127.0.0.1:{port}", log, shown.strip())
    try:
        _wait_until_healthy(server, process)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_healthy(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {process.returncode}:\n{server.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer /healthz in {STARTUP_TIMEOUT} s:\n{server.log.read_text()}")


def gunicorn_config_without_access_log(project: Project, folder: Path) -> Path:
    """The project's gunicorn.conf.py with the access log off (for one ablation)."""
    config = folder / "gunicorn-no-access-log.conf.py"
    original = project.path / "gunicorn.conf.py"
    config.write_text(f"exec(compile(open({str(original)!r}).read(), {str(original)!r}, 'exec'))\naccesslog = None\n")
    return config


def loaded_libraries(pid: int) -> set[str]:
    """Which of uvloop and httptools a process has loaded (read from its memory map)."""
    found = set()
    for worker in [pid, *children(pid)]:
        try:
            maps = Path(f"/proc/{worker}/maps").read_text()
        except OSError:
            continue
        found |= {name for name in ("uvloop", "httptools") if f"/{name}/" in maps}
    return found
