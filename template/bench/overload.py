"""Overload: an open-loop sender at a fixed rate, so that queueing shows up in the latency.

Request i is due at start + i / rate, whatever happened to the earlier ones, and its latency
is counted from that moment (as wrk2 does), not from when a connection was free to send it.
A closed-loop tool (wrk, hey) sends its next request only when an answer arrives, so an
overloaded service slows the tool down instead of showing its queue.

The sender keeps `connections` keep-alive connections (by default 10x the service's admission
limit): at a rate above what the service can answer, all of them are busy and the service
holds 10x as many requests as it admits. A service without admission control queues them;
one with it answers the excess 503 at once.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .http import REQUEST_ERRORS, Connection, Target, run


@dataclass(frozen=True)
class StatusLatency:
    count: int
    share: float
    p50_ms: float  # from when the request was due
    p99_ms: float
    service_p50_ms: float  # from when it was sent
    service_p99_ms: float


@dataclass(frozen=True)
class OverloadResult:
    rate: float  # requests per second asked for
    sent_rate: float  # what the sender managed
    duration: float
    connections: int
    requests: int
    unanswered: int
    by_status: dict[str, StatusLatency] = field(default_factory=dict)  # "200", "503", "error"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def run_overload(
    url: str,
    paths: Sequence[str],
    rate: float,
    duration: float,
    connections: int,
    timeout: float = 10,
) -> OverloadResult:
    return run(_open_loop(url, paths, rate, duration, connections, timeout))


async def _open_loop(
    url: str,
    paths: Sequence[str],
    rate: float,
    duration: float,
    connections: int,
    deadline: float,
) -> OverloadResult:
    loop = asyncio.get_running_loop()
    target = Target.parse(url)
    total = max(1, round(rate * duration))
    due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    samples: list[tuple[str, float, float]] = []  # status, latency from due, from sent
    sent_times: list[float] = []

    async def sender(connection: Connection) -> None:
        while True:
            number, due_at = await due.get()
            sent = loop.time()
            sent_times.append(sent)
            try:
                async with asyncio.timeout(deadline):
                    status = str((await connection.get(paths[number % len(paths)])).status)
            except (*REQUEST_ERRORS, TimeoutError):
                status = "error"
                connection.close()
            done = loop.time()
            samples.append((status, done - due_at, done - sent))
            due.task_done()

    pool = [Connection(target) for _ in range(connections)]
    workers = [asyncio.create_task(sender(connection)) for connection in pool]
    start = loop.time() + 0.1
    for number in range(total):
        due_at = start + number / rate
        if (delay := due_at - loop.time()) > 0:
            await asyncio.sleep(delay)
        due.put_nowait((number, due_at))
    try:
        async with asyncio.timeout(deadline + 5):
            await due.join()
    except TimeoutError:
        pass
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for connection in pool:
        connection.close()

    span = (max(sent_times) - min(sent_times)) if len(sent_times) > 1 else duration
    return OverloadResult(
        rate=rate,
        sent_rate=len(sent_times) / span if span > 0 else float(len(sent_times)),
        duration=duration,
        connections=connections,
        requests=total,
        unanswered=total - len(samples),
        by_status=_by_status(samples),
    )


def _by_status(samples: list[tuple[str, float, float]]) -> dict[str, StatusLatency]:
    counts = Counter(status for status, _, _ in samples)
    result = {}
    for status in sorted(counts):
        latencies = sorted(1000 * latency for code, latency, _ in samples if code == status)
        service = sorted(1000 * time for code, _, time in samples if code == status)
        result[status] = StatusLatency(
            count=counts[status],
            share=counts[status] / len(samples),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            service_p50_ms=percentile(service, 50),
            service_p99_ms=percentile(service, 99),
        )
    return result
