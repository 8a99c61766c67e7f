"""Where a request's server CPU goes: py-spy samples one worker under wrk's load, and each sample
of the thread holding the GIL is put down to the component of its innermost frame that belongs
to one (the access line's JSON is the logging's, not the standard library's; asyncpg called by
SQLAlchemy is the driver's).

The components are rules on the frames' file paths, below; a sample none of them claims is
"other". Hand-written because py-spy writes flame graphs and raw stacks, not a table of costs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

# (component, substrings of a frame's "function (file:line)"), innermost match wins; in the
# order a request meets them, outside in.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("event loop and gunicorn's worker", ("uvloop/", "asyncio/", "gunicorn/", "uvicorn_worker/", "/worker.py")),
    ("uvicorn's HTTP protocol (httptools)", ("uvicorn/",)),
    (
        "Starlette's and FastAPI's own middleware",
        ("starlette/middleware/", "fastapi/middleware/", "_asgi.py", "_body_limit.py"),
    ),
    ("request ID (asgi-correlation-id)", ("asgi_correlation_id/",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("access line and logging", ("logging/", "pythonjsonlogger/")),
    ("observe.py (metrics and access middleware)", ("/observe.py",)),
    ("early refusal and admission", ("/early_refusal.py", "/admission.py")),
    ("deadline (overload.py)", ("/overload.py",)),
    ("AnyIO (cancel scopes, the thread pool's hand-offs)", ("anyio/",)),
    (
        "routing and request handling (Starlette, FastAPI)",
        ("starlette/", "fastapi/routing.py", "fastapi/applications.py"),
    ),
    ("dependency injection (FastAPI)", ("fastapi/dependencies/",)),
    ("the service's dependencies (db.py)", ("/db.py",)),
    ("SQLAlchemy (pool, execution, greenlets)", ("sqlalchemy/", "greenlet")),
    ("database driver (asyncpg, psycopg)", ("asyncpg/", "psycopg/", "psycopg_pool/")),
    ("pydantic (validation, JSON)", ("pydantic/", "pydantic_core/", "fastapi/_compat", "fastapi/encoders.py")),
    ("the handler", ("/items.py", "fastapi_app.py")),
]
OTHER = "other"


def record(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    """Start sampling process `pid` (every thread) for `seconds`; wait on the returned process."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("the profile needs py-spy, a dev dependency of this repository: uv sync")
    command = [py_spy, "record", "--rate", str(rate), "--duration", str(max(1, round(seconds)))]
    # --gil: only samples of the thread holding the GIL, the one running Python. A thread waiting
    # (in epoll, on a queue, on the database's answer) has released it: time waited is not CPU.
    command += ["--format", "raw", "--output", str(out), "--pid", str(pid), "--nonblocking", "--gil"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def component(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        found = [(len(needle), name) for name, needles in COMPONENTS for needle in needles if needle in frame]
        if found:
            return max(found)[1]  # the most specific rule: starlette/middleware/ over starlette/
    return OTHER


def shares(collapsed: Path) -> dict[str, float]:
    """Each component's share of the working samples in a py-spy raw (collapsed stacks) file."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[component(stack.split(";"))] += int(count)
    total = sum(counts.values())
    return {name: counts[name] / total for name, _ in [*COMPONENTS, (OTHER, ())] if counts[name]} if total else {}
