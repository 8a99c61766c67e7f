"""What the numbers were measured on: this machine, this Python, these packages, that service."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .http import REQUEST_ERRORS, get_once, run

PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "uvicorn",
    "uvicorn-worker",
    "gunicorn",
    "uvloop",
    "httptools",
    "anyio",
)


def describe_machine() -> dict[str, str]:
    """CPU, cores, memory, OS, Python and package versions of the environment running this."""
    facts = {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical; this process may run on"
        f" {_cpu_list(os.sched_getaffinity(0))}",
        "memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "wrk": _wrk_version(),
    }
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    facts["packages"] = ", ".join(versions)
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_list(cpus: set[int]) -> str:
    return "CPU " + ",".join(str(cpu) for cpu in sorted(cpus))


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _wrk_version() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "not installed"
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


@dataclass(frozen=True)
class Capacity:
    """What the service says about its limits in GET /capacity (each answer is one worker's)."""

    workers: int | None  # distinct worker pids seen
    queue_budget_ms: float | None  # per worker: how long a request may wait for a connection
    thread_limit: int | None  # per worker
    source: str


def discover_capacity(url: str, probes: int = 24) -> Capacity:
    """Read GET /capacity over `probes` fresh connections: the kernel hands each to a worker,
    so the distinct pids seen are the workers (a lower bound, which 24 probes make tight)."""
    return run(_discover(url, probes))


async def _discover(url: str, probes: int) -> Capacity:
    probed = [await _json(url, "/capacity") for _ in range(probes)]
    answers = [answer for answer in probed if answer is not None]
    if not answers:
        return Capacity(None, None, None, "not published by the service")
    first = answers[0]  # the service's WorkerCapacity (api/capacity.py)
    return Capacity(
        workers=len({answer["pid"] for answer in answers}),
        queue_budget_ms=float(first["admission"]["queue_budget_ms"]),
        thread_limit=int(first["threads"]["limit"]),
        source="GET /capacity",
    )


async def _json(url: str, path: str) -> dict[str, Any] | None:
    """The JSON a 200 answer carries; None for any other answer, or none."""
    try:
        answer = await get_once(url, path)
    except (*REQUEST_ERRORS, TimeoutError):
        return None
    return json.loads(answer.body) if answer.status == 200 else None
