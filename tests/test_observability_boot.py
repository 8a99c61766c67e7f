"""Metrics and logs of a real service: gunicorn with two workers, on PostgreSQL, per db_driver.

/metrics must report the whole instance whichever worker answers (prometheus_client's
multiprocess mode, prepared by gunicorn.conf.py), lose nothing when a worker is killed, and
count nothing twice when it is replaced. Every log line must be JSON, and carry the request ID
the response was given.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.load import concurrently
from tests.support.services import (
    POOL_SIZE,
    WORKERS,
    Database,
    Gunicorn,
    Project,
    gunicorn,
    item_paths,
    items_locked,
)

pytestmark = pytest.mark.boot

ITEM_ROUTE = "/items/{item_id}"
SERIAL_REQUESTS = 30
OVERLOAD_REQUESTS = 40
SCRAPES = 8  # over fresh connections: both workers answer some of them
# Small budget and deadlines, so an overload shows in seconds: requests beyond the pool are
# refused (503), the admitted ones wait on the locked table until statement_timeout (504).
SETTINGS = {
    "QUEUE_BUDGET_MS": "50",
    "REQUEST_TIMEOUT": "1",
    "STATEMENT_TIMEOUT": "1",
    "BENCH_ENDPOINTS": "true",
}
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus' text format, as (name, labels, value): enough for these assertions."""
    found = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = SAMPLE.match(line)
        assert match, line
        found.append((match["name"], dict(LABEL.findall(match["labels"] or "")), float(match["value"])))
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, found, value in samples(text)
        if sample == name and all(found.get(key) == wanted for key, wanted in labels.items())
    )


def scrape(server: Gunicorn) -> str:
    """/metrics over a connection of its own (so the kernel may give it to either worker)."""
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def worker_pids(server: Gunicorn) -> set[int]:
    children = f"/proc/{server.process.pid}/task/{server.process.pid}/children"
    with open(children) as listed:
        return {int(pid) for pid in listed.read().split()}


@pytest.fixture(scope="module")
def service(project: Project, database: Database) -> Iterator[Gunicorn]:
    with gunicorn(project, database.url, **SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
def item_path(database: Database) -> str:
    [path] = item_paths(database, ["observed"])
    return path


@pytest.fixture(scope="module")
def client_counts(service: Gunicorn, database: Database, item_path: str) -> Counter[int]:
    """What the client saw: serial requests over fresh connections, then an overload."""
    counts: Counter[int] = Counter()
    for _ in range(SERIAL_REQUESTS):
        counts[httpx.get(f"{service.url}{item_path}", timeout=10).status_code] += 1
    with items_locked(database.url, seconds=2.5):
        counts.update(answer.status for answer in concurrently(service.url, item_path, OVERLOAD_REQUESTS))
    return counts


def assert_metrics_match(service: Gunicorn, counts: Counter[int]) -> None:
    answered_by: set[str] = set()
    for _ in range(SCRAPES):
        text = scrape(service)
        assert total(text, "http_requests_total", route=ITEM_ROUTE) == sum(counts.values()), text
        for status in (200, 503, 504):
            assert total(text, "http_requests_total", route=ITEM_ROUTE, status=str(status)) == counts[status], text
        assert total(text, "boot_check_admission_decisions_total", outcome="refused") == counts[503], text
        admitted = total(text, "boot_check_admission_decisions_total", outcome="admitted")
        assert admitted == counts[200] + counts[504], text
        assert total(text, "db_connection_wait_seconds_count") == admitted, text
        assert total(text, "boot_check_timeouts_total") == counts[504], text
        assert total(text, "http_request_duration_seconds_count", route=ITEM_ROUTE) == sum(counts.values()), text
        answered_by.add(text)
    # Live gauges of live workers only: each pool's size, once.
    assert total(text, "db_pool_size") == WORKERS * POOL_SIZE, text
    assert total(text, "boot_check_admission_permits") > 0, text


def test_metrics_report_what_the_client_counted_whichever_worker_answers(
    service: Gunicorn, client_counts: Counter[int]
) -> None:
    assert client_counts[200] >= SERIAL_REQUESTS, client_counts
    assert client_counts[503] > 0, f"the overload refused nothing: {client_counts}"
    assert set(client_counts) <= {200, 503, 504}, client_counts
    assert_metrics_match(service, client_counts)


def test_a_killed_worker_is_replaced_without_losing_or_doubling_its_counts(
    service: Gunicorn, client_counts: Counter[int], item_path: str
) -> None:
    before = worker_pids(service)
    assert len(before) == WORKERS
    victim = min(before)
    started = service.output().count("Application startup complete.")
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = worker_pids(service)
        if (
            victim not in now
            and len(now) == WORKERS
            and service.output().count("Application startup complete.") > started
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {victim} was not replaced:\n{service.output()[-3000:]}")
    assert_metrics_match(service, client_counts)
    more: Counter[int] = Counter(httpx.get(f"{service.url}{item_path}", timeout=10).status_code for _ in range(10))
    assert_metrics_match(service, client_counts + more)


def log_records(service: Gunicorn) -> list[dict[str, Any]]:
    records = []
    for line in service.raw_output().splitlines():
        record = json.loads(line)  # every line the service writes is one JSON object
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "logger", "message", "request_id"} <= record.keys(), line
        records.append(record)
    return records


def test_every_log_line_is_json_and_carries_its_request_id(service: Gunicorn, item_path: str) -> None:
    served = httpx.get(f"{service.url}{item_path}", timeout=10)
    kept = httpx.get(f"{service.url}{item_path}", headers={"X-Request-ID": "client-id_1.A"}, timeout=10)
    replaced = [
        httpx.get(f"{service.url}{item_path}", headers={"X-Request-ID": bad}, timeout=10)
        for bad in ("two words", "x" * 129, "semi;colon")
    ]
    late = httpx.get(f"{service.url}/bench/sleep/async", params={"seconds": 3}, timeout=10)
    assert late.status_code == 504, late.text

    assert kept.headers["X-Request-ID"] == "client-id_1.A"
    for response in replaced:
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"]), response.headers
    ids = [response.headers["X-Request-ID"] for response in (served, kept, *replaced, late)]
    assert len(set(ids)) == len(ids)

    time.sleep(0.5)  # the access line is written as the response ends
    records = log_records(service)
    for response in (served, kept, *replaced, late):
        request_id = response.headers["X-Request-ID"]
        access = [r for r in records if r["request_id"] == request_id and r["logger"] == "boot_check.access"]
        assert len(access) == 1, (request_id, access)
        [line] = access
        assert line["method"] == "GET"
        assert line["status"] == response.status_code
        assert line["duration_ms"] >= 0
        assert line["route"] in (ITEM_ROUTE, "/bench/sleep/async")
    # The service's own line for the late request (the deadline's warning) carries its ID too.
    late_lines = [r for r in records if r["request_id"] == late.headers["X-Request-ID"]]
    assert any("passed its 1s deadline" in r["message"] for r in late_lines), late_lines


def test_a_refusal_carries_the_request_id(service: Gunicorn, database: Database, item_path: str) -> None:
    """The admission gate answers 503 before any dependency runs: the ID is on that answer too."""

    async def one(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.get(item_path, headers={"X-Request-ID": f"overload-{n}"})

    async def all_of_them() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=OVERLOAD_REQUESTS, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client, n) for n in range(OVERLOAD_REQUESTS)))

    with items_locked(database.url, seconds=2.0):
        answers = asyncio.run(all_of_them())
    refused = [n for n, answer in enumerate(answers) if answer.status_code == 503]
    assert refused, [answer.status_code for answer in answers]
    for n in refused:
        assert answers[n].headers["X-Request-ID"] == f"overload-{n}"
