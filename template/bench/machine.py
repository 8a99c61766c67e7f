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
    """The service's limits that the experiments are sized by."""

    workers: int | None
    admission_limit: int | None  # per worker
    thread_limit: int | None  # per worker
    source: str

    @property
    def admission_total(self) -> int | None:
        if self.admission_limit is None or self.workers is None:
            return None
        return self.admission_limit * self.workers


def discover_capacity(url: str, probes: int = 24) -> Capacity:
    """Read the limits from the service: /readyz's `capacity` section, else GET /capacity.

    Each answer comes from one worker; the worker count is the `workers` field where there is
    one, else the number of distinct worker pids seen over `probes` fresh connections.
    """
    return run(_discover(url, probes))


async def _discover(url: str, probes: int) -> Capacity:
    for path in ("/readyz", "/capacity"):
        section = _section(await _json(url, path), path)
        admission = _limit(section, "admission") if section else None
        if section is None or admission is None:
            continue
        workers = section.get("workers")
        if not isinstance(workers, int):
            pids = set()
            for _ in range(probes):
                pid = (_section(await _json(url, path), path) or {}).get("pid")
                if isinstance(pid, int):
                    pids.add(pid)
            workers = len(pids) or None
        return Capacity(workers, admission, _limit(section, "threads"), f"GET {path}")
    return Capacity(None, None, None, "not published by the service")


def _section(payload: dict[str, Any], path: str) -> dict[str, Any] | None:
    section = payload.get("capacity", payload if path == "/capacity" else None)
    return section if isinstance(section, dict) else None


def _limit(section: dict[str, Any], name: str) -> int | None:
    value = section.get(name, section.get(f"{name}_limit"))
    if isinstance(value, dict):
        value = value.get("limit")
    if name == "threads" and value is None:
        value = section.get("thread_limit")
    return value if isinstance(value, int) else None


async def _json(url: str, path: str) -> dict[str, Any]:
    try:
        answer = await get_once(url, path)
        payload = json.loads(answer.body)
    except (*REQUEST_ERRORS, TimeoutError):
        return {}
    return payload if isinstance(payload, dict) else {}
