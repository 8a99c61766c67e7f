"""The threadpool experiment: N concurrent requests to an endpoint that sleeps, timed as a whole.

A `def` handler runs in AnyIO's thread pool and holds a thread while `time.sleep` blocks it, so
a worker answers at most as many of them at once as it has threads: 120 requests on 40
threads take three rounds. An `async def` handler awaiting `asyncio.sleep` holds no thread,
and every request finishes after one sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .http import REQUEST_ERRORS, Connection, Target, get_once, run

# (label, path): the sleeping endpoints of api/bench.py.
HANDLERS = (
    ("def + time.sleep", "/bench/sleep/sync"),
    ("async def + asyncio.sleep", "/bench/sleep/async"),
)


@dataclass(frozen=True)
class SleepLevel:
    handler: str
    concurrency: int
    sleep: float
    total: float  # seconds from the first request sent to the last answer
    ok: int
    failed: int


def endpoints_enabled(url: str) -> bool:
    """Whether the service serves the sleeping endpoints (BENCH_ENDPOINTS=true)."""
    try:
        answer = run(get_once(url, f"{HANDLERS[1][1]}?seconds=0"))
    except (*REQUEST_ERRORS, TimeoutError):
        return False
    return answer.status == 200


def run_threadpool(
    url: str,
    levels: list[int],
    sleep: float,
    progress: Callable[[str], None],
) -> list[SleepLevel]:
    results = []
    for label, path in HANDLERS:
        for concurrency in levels:
            level = run(_level(url, label, f"{path}?seconds={sleep:g}", concurrency, sleep))
            progress(
                f"threadpool: {label:<26} x{concurrency:<4} {level.total:6.2f} s"
                + (f"  ({level.failed} failed)" if level.failed else "")
            )
            results.append(level)
    return results


async def _level(url: str, label: str, path: str, concurrency: int, sleep: float) -> SleepLevel:
    target = Target.parse(url)
    connections = [Connection(target) for _ in range(concurrency)]
    timeout = sleep * (concurrency + 1) + 30  # even one thread would finish them all by then

    async def one(connection: Connection) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return (await connection.get(path)).status == 200
        except (*REQUEST_ERRORS, TimeoutError):
            return False
        finally:
            connection.close()

    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = await asyncio.gather(*(one(connection) for connection in connections))
    total = loop.time() - started
    ok = sum(outcomes)
    return SleepLevel(label, concurrency, sleep, total, ok, concurrency - ok)
