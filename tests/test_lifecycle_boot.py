"""Worker recycling and shutdown lose no request: a real gunicorn, real clients, real signals.

Per db_driver, a generated service runs under gunicorn while clients keep sending. Every request
a client sends must be answered: a reset, or a connection closed before its answer, fails the
test. A refused connection (nothing listening any more, after SIGTERM) is a clean answer: the
client knows its request was never sent.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.processes import wait_until
from tests.support.services import Database, Gunicorn, Project, gunicorn, item_paths, items_locked

pytestmark = pytest.mark.boot

RECYCLE = {"MAX_REQUESTS": "50", "MAX_REQUESTS_JITTER": "0"}
CLIENTS = 6
RECYCLES = 4  # worker replacements each recycling test waits for


@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    statuses: Counter[int] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # sent, then reset or closed unanswered
    refused: int = 0  # connections refused: nothing was sent
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, client: httpx.Client, path: str, trace: Callable[[str, object], None] | None = None) -> int | None:
        """One request; its status, or None when it was refused or lost."""
        try:
            status = client.get(path, extensions={"trace": trace} if trace else None).status_code
        except httpx.ConnectError:
            with self.lock:
                self.refused += 1
            return None
        except httpx.TransportError as error:
            with self.lock:
                self.lost.append(f"{path}: {error!r}")
            return None
        with self.lock:
            self.statuses[status] += 1
        return status


@contextmanager
def clients(count: int, work: Callable[[httpx.Client, threading.Event], None], url: str) -> Iterator[threading.Event]:
    """`count` threads, each with its own keep-alive connection, doing `work` until told to stop."""
    stop = threading.Event()

    def run() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=url, timeout=30, limits=limits) as client:
            work(client, stop)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield stop
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def workers_booted(server: Gunicorn) -> int:
    return server.output().count("Booting worker with pid")


@pytest.fixture(scope="module")
def item_path(database: Database) -> str:
    [path] = item_paths(database, ["lifecycle"])
    return path


# Recycling


@pytest.mark.parametrize("workers", [1, 2], ids=lambda workers: f"workers={workers}")
def test_keep_alive_clients_lose_no_request_across_recycles(project: Project, database: Database, workers: int) -> None:
    tally = Tally()

    def keep_sending(client: httpx.Client, stop: threading.Event) -> None:
        while not stop.is_set():
            tally.send(client, "/healthz")

    with gunicorn(project, database.url, workers=workers, **RECYCLE) as server:
        with clients(CLIENTS, keep_sending, server.url):
            wait_until(lambda: workers_booted(server) - workers >= RECYCLES, timeout=90)
        recycled = workers_booted(server) - workers

    sent = tally.statuses.total() + len(tally.lost)
    assert tally.lost == [], f"{len(tally.lost)} of {sent} lost: {tally.lost[:5]}"
    assert set(tally.statuses) == {200}, tally.statuses
    assert tally.refused == 0
    assert recycled >= RECYCLES, f"only {recycled} recycles:\n{server.output()}"


@pytest.mark.parametrize("workers", [1, 2], ids=lambda workers: f"workers={workers}")
def test_recycling_under_a_refusal_storm_keeps_the_instance_answering(
    project: Project, database: Database, item_path: str, workers: int
) -> None:
    """Database requests wait behind a lock, holding their admission slots (the slow requests
    in flight); more are refused with 503 (the storm), while /healthz is asked every 50 ms and
    the workers reach MAX_REQUESTS."""
    tally, probes = Tally(), Tally()
    answered_at: list[float] = []

    def storm(client: httpx.Client, stop: threading.Event) -> None:
        while not stop.is_set():
            if tally.send(client, item_path) == 503:
                time.sleep(0.02)  # a storm still, without starving this process's probe thread

    def probe(client: httpx.Client, stop: threading.Event) -> None:
        while not stop.is_set():
            if probes.send(client, "/healthz") == 200:
                answered_at.append(time.monotonic())
            time.sleep(0.05)

    settings = {**RECYCLE, "MAX_REQUESTS": "10"}
    with gunicorn(project, database.url, workers=workers, **settings) as server:
        # More clients than every worker admits at once: the first ones wait for the lock.
        with items_locked(database.url, seconds=6), clients(1, probe, server.url), clients(24, storm, server.url):
            time.sleep(5)
        recycled = workers_booted(server) - workers

    assert tally.lost == [], tally.lost[:5]
    assert probes.lost == [], probes.lost[:5]
    assert set(tally.statuses) == {200, 503}, tally.statuses
    assert set(probes.statuses) == {200}, probes.statuses
    gaps = [later - earlier for earlier, later in itertools.pairwise(answered_at)]
    assert len(answered_at) >= 10, f"/healthz answered {len(answered_at)} times"
    assert max(gaps) < 2, f"/healthz went unanswered for {max(gaps):.1f} s (gaps {gaps})"
    assert recycled >= 1, f"no recycle:\n{server.output()}"


def test_refusals_do_not_count_toward_max_requests(project: Project, database: Database, item_path: str) -> None:
    """Hundreds of 503s and fewer successful answers than MAX_REQUESTS: no recycle."""
    tally = Tally()

    def storm(client: httpx.Client, stop: threading.Event) -> None:
        while not stop.is_set():
            tally.send(client, item_path)

    # A short queue budget: the storm's requests are refused after 50 ms of waiting, not 500.
    storm_settings = {"MAX_REQUESTS": "30", "MAX_REQUESTS_JITTER": "0", "QUEUE_BUDGET_MS": "50"}
    with gunicorn(project, database.url, workers=1, **storm_settings) as server:
        with items_locked(database.url, seconds=4), clients(16, storm, server.url):
            time.sleep(3)
        recycled = workers_booted(server) - 1

    assert tally.lost == [], tally.lost[:5]
    assert tally.statuses[503] >= 100, tally.statuses
    assert tally.statuses[200] < 30, tally.statuses
    assert recycled == 0, f"{recycled} recycles for {tally.statuses[200]} answers"


# Stopping


@pytest.mark.parametrize("drain", ["0", "1"], ids=lambda drain: f"DRAIN_SECONDS={drain}")
def test_sigterm_under_keep_alive_load_answers_every_request_sent(
    project: Project, database: Database, drain: str
) -> None:
    tally, slow = Tally(), Tally()
    after_sigterm: list[tuple[str, int]] = []
    stopping = threading.Event()

    def keep_sending(client: httpx.Client, stop: threading.Event) -> None:
        while not stop.is_set():
            if tally.send(client, "/healthz") is None and tally.refused:
                return  # nothing listens any more

    def new_connections(client: httpx.Client, stop: threading.Event) -> None:
        stopping.wait()
        while not stop.is_set():
            with httpx.Client(base_url=client.base_url, timeout=30) as fresh:
                for path in ("/healthz", "/readyz"):
                    status = tally.send(fresh, path)
                    if status is None:
                        return
                    after_sigterm.append((path, status))

    sent = threading.Event()

    def slow_request() -> None:
        def trace(event: str, info: object) -> None:
            if event == "http11.send_request_body.complete":
                sent.set()

        with httpx.Client(base_url=server.url, timeout=30) as client:
            slow.send(client, "/bench/sleep/async?seconds=2", trace)

    settings = {"BENCH_ENDPOINTS": "true", "DRAIN_SECONDS": drain}
    with gunicorn(project, database.url, workers=2, **settings) as server:
        in_flight = threading.Thread(target=slow_request)
        with clients(CLIENTS, keep_sending, server.url), clients(2, new_connections, server.url):
            in_flight.start()
            assert sent.wait(10), "the slow request was not sent"
            time.sleep(0.5)  # the load under way
            server.process.send_signal(signal.SIGTERM)
            stopping.set()
            code = server.process.wait(timeout=30)
        in_flight.join()

    assert tally.lost == [], f"{len(tally.lost)} lost: {tally.lost[:5]}"
    assert slow.statuses == {200: 1}, (slow.statuses, slow.lost)
    assert code == 0, server.output()
    assert tally.refused > 0  # every client went on until nothing listened
    if drain != "0":  # served while draining, with readiness off
        assert ("/healthz", 200) in after_sigterm, after_sigterm
        assert ("/readyz", 503) in after_sigterm, after_sigterm
