"""An open-loop sender: requests due at a fixed rate, so that queueing shows up in the latency.

Request i is due at start + i / rate, whatever happened to the earlier ones, and its latency
is counted from that moment (as wrk2 does), not from when a connection was free to send it.
A closed-loop tool (wrk, hey) sends its next request only when an answer arrives, so an
overloaded service slows the tool down instead of showing its queue.

The sender keeps a fixed set of keep-alive connections, many more than the service answers at
once, so that they are not the limit: a service without admission control holds every one of
them busy and its queue grows; one with admission control answers the excess 503 at once.
A request still waiting for a free connection when the sending window ends is not sent
("unsent"): the service was too slow to take it.

Meanwhile a probe asks for /healthz on a connection of its own, one request after the other,
so that liveness under load is measured as an orchestrator would see it. The probe runs in a
process of its own: in the sender's, its answers would wait for the sender's busy event loop,
and the probe would measure the sender.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection as ResultPipe
from multiprocessing.synchronize import Event

from .http import REQUEST_ERRORS, Connection, Target, run

OK = "200"
REFUSED = "503"
UNSENT = "unsent"
PROBE_INTERVAL = 0.05  # seconds between the end of one /healthz probe and the next


@dataclass(frozen=True)
class StatusLatency:
    count: int
    share: float  # of every request due, sent or not
    p50_ms: float  # from when the request was due
    p99_ms: float
    service_p50_ms: float  # from when it was sent
    service_p99_ms: float


@dataclass(frozen=True)
class ProbeResult:
    """The /healthz probe: latency from when each probe was sent."""

    path: str
    count: int
    failed: int  # not 200, or no answer within the timeout
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float  # requests per second asked for
    sent_rate: float  # what the sender managed
    duration: float  # of the sending window
    elapsed: float  # from the first request due to the last answer
    connections: int
    requests: int  # due over the window
    by_status: dict[str, StatusLatency] = field(default_factory=dict)  # "200", "503", "error"...
    probe: ProbeResult | None = None

    def count(self, status: str) -> int:
        found = self.by_status.get(status)
        return found.count if found else 0

    @property
    def ok_rps(self) -> float:
        """Goodput: 200 answers per second, until the last answer came."""
        return self.count(OK) / self.elapsed

    @property
    def refused_share(self) -> float:
        return self.count(REFUSED) / self.requests if self.requests else 0.0

    def latency(self, status: str) -> StatusLatency | None:
        return self.by_status.get(status)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of values already sorted."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def run_open_loop(
    url: str,
    paths: Sequence[str],
    rate: float,
    duration: float,
    connections: int,
    probe_path: str | None = None,
    timeout: float = 10,
) -> OpenLoopResult:
    """Send GET paths[i % len(paths)] at `rate` per second for `duration` seconds."""
    if probe_path is None:
        return run(_open_loop(url, paths, rate, duration, connections, timeout))
    # Forked before this process runs an event loop, so the child starts from a clean state.
    processes = multiprocessing.get_context("fork")
    stop = processes.Event()
    results, result = processes.Pipe(duplex=False)
    prober = processes.Process(
        target=_probe_process, args=(url, probe_path, stop, timeout, result), daemon=True
    )
    prober.start()
    try:
        found = run(_open_loop(url, paths, rate, duration, connections, timeout))
    finally:
        stop.set()
    probe = results.recv() if results.poll(timeout + 5) else None
    prober.join(5)
    return replace(found, probe=probe)


def _probe_process(url: str, path: str, stop: Event, deadline: float, result: ResultPipe) -> None:
    result.send(run(_probe(Target.parse(url), path, stop, deadline)))
    result.close()


async def _open_loop(
    url: str,
    paths: Sequence[str],
    rate: float,
    duration: float,
    connections: int,
    deadline: float,
) -> OpenLoopResult:
    loop = asyncio.get_running_loop()
    target = Target.parse(url)
    total = max(1, round(rate * duration))
    due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    samples: list[tuple[str, float, float]] = []  # status, latency from due, from sent
    sent_times: list[float] = []
    answered = [0.0]  # when the last answer came
    start = loop.time() + 0.1
    window_end = start + duration

    async def sender(connection: Connection) -> None:
        while True:
            number, due_at = await due.get()
            sent = loop.time()
            if sent > window_end + 1:  # queued past the window: the service fell behind
                samples.append((UNSENT, float("nan"), float("nan")))
                due.task_done()
                continue
            sent_times.append(sent)
            try:
                async with asyncio.timeout(deadline):
                    status = str((await connection.get(paths[number % len(paths)])).status)
            except (*REQUEST_ERRORS, TimeoutError):
                status = "error"
                connection.close()
            done = answered[0] = loop.time()
            samples.append((status, done - due_at, done - sent))
            due.task_done()

    pool = [Connection(target) for _ in range(connections)]
    senders = [asyncio.create_task(sender(connection)) for connection in pool]
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
    for task in senders:
        task.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    for connection in pool:
        connection.close()

    span = (max(sent_times) - min(sent_times)) if len(sent_times) > 1 else duration
    return OpenLoopResult(
        rate=rate,
        sent_rate=len(sent_times) / span if span > 0 else float(len(sent_times)),
        duration=duration,
        elapsed=max(duration, answered[0] - start),
        connections=connections,
        requests=total,
        by_status=_by_status(samples, total),
    )


async def _probe(target: Target, path: str, stop: Event, deadline: float) -> ProbeResult:
    loop = asyncio.get_running_loop()
    connection = Connection(target)
    latencies: list[float] = []
    failed = 0
    while not stop.is_set():
        sent = loop.time()
        try:
            async with asyncio.timeout(deadline):
                answer = await connection.get(path)
            failed += answer.status != 200
        except (*REQUEST_ERRORS, TimeoutError):
            failed += 1
            connection.close()
        latencies.append(1000 * (loop.time() - sent))
        await asyncio.sleep(PROBE_INTERVAL)
    connection.close()
    latencies.sort()
    return ProbeResult(
        path=path,
        count=len(latencies),
        failed=failed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else float("nan"),
    )


def _by_status(samples: list[tuple[str, float, float]], total: int) -> dict[str, StatusLatency]:
    counts = Counter(status for status, _, _ in samples)
    counts[UNSENT] += total - len(samples)  # still queued when the sender gave up waiting
    result = {}
    for status in sorted(status for status, count in counts.items() if count):
        latencies = sorted(1000 * latency for code, latency, _ in samples if code == status)
        service = sorted(1000 * time for code, _, time in samples if code == status)
        if status == UNSENT:
            latencies = service = []
        result[status] = StatusLatency(
            count=counts[status],
            share=counts[status] / total,
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            service_p50_ms=percentile(service, 50),
            service_p99_ms=percentile(service, 99),
        )
    return result
