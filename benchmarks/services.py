"""The services under test: generated, installed, and served one at a time by gunicorn."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import children
from tests.support.processes import answers_200, free_port, running, wait_until_ready
from tests.support.services import Project, generate_and_install

HERE = Path(__file__).resolve().parent
ANSWERS = {"project_name": "Bench Service"}  # every other answer at its default
PACKAGE = "bench_service"
STARTUP_TIMEOUT = 60


def build(driver: str, workdir: Path) -> Project:
    """Generate the variant with copier and install it (with its bench extra) with uv."""
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to install the generated services: pip install uv")
    return generate_and_install({**ANSWERS, "db_driver": driver}, workdir / driver, uv, extra="bench")


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
    name: str,
    project: Project,
    args: list[str],
    env: Mapping[str, str],
    cpu: int | None,
    logs: Path,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Run gunicorn from the project's folder, or `cwd`, (pinned to `cpu`) until the block ends.

    gunicorn reads ./gunicorn.conf.py when it is given no -c: a reference served from a folder
    without one gets gunicorn's and uvicorn-worker's own defaults."""
    port = free_port()
    pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
    command = [*pinned, project.bin("gunicorn"), *args, "--bind", f"127.0.0.1:{port}"]
    log = logs / f"{name}.log"
    with running(command, log, cwd=cwd or project.path, env=dict(env)) as process:
        server = Server(name, process.pid, f"http://127.0.0.1:{port}", log, " ".join([*pinned, "gunicorn", *args]))
        wait_until_ready(
            process, lambda: answers_200(f"{server.url}/healthz"), STARTUP_TIMEOUT, name=name, output=log.read_text
        )
        yield server


def gunicorn_config_without_access_log(project: Project, folder: Path) -> Path:
    """The project's gunicorn.conf.py with the access line off (for one ablation): the service
    writes it itself (observe.py) through its access logger, here raised above INFO."""
    config = folder / "gunicorn-no-access-log.conf.py"
    original = project.path / "gunicorn.conf.py"
    quiet = f"logconfig_dict['loggers']['{PACKAGE}.access'] = {{'level': 'WARNING'}}"
    config.write_text(f"exec(compile(open({str(original)!r}).read(), {str(original)!r}, 'exec'))\n{quiet}\n")
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
