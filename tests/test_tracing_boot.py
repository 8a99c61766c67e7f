"""Tracing of a real service: gunicorn with two workers, on PostgreSQL, per db_driver.

The service is installed with its `tracing` extra alone (what a user installs), pointed at a
fake OTLP/HTTP collector on loopback (tests/support/otlp.py) by the standard
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, asked for a few items, and stopped with SIGTERM. The
exporter's schedule is far longer than the test, so every span the collector holds was sent
when the workers shut down: none may be lost there. Each item request must be one server span
of its route template, with database spans under it in its trace; the resource must name the
project; the probes and /metrics must yield no spans at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.answers import DRIVERS
from tests.support.otlp import Collector, ReceivedSpan, fake_collector
from tests.support.services import ANSWERS, Project, generate_and_install, gunicorn, item_paths, migrated_database

pytestmark = pytest.mark.boot

SLUG = "trace_check"  # from the project name below: not the default's, so the name is the answer's
ITEM_ROUTE = "/items/{item_id}"
ITEM_REQUESTS = 6
UNTRACED = ("/healthz", "/readyz", "/metrics")
UNTRACED_REQUESTS = 3  # of each
# Nothing is exported on schedule while the test runs: what arrives was flushed at shutdown.
SCHEDULE_DELAY_MS = 600_000
SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT


@dataclass(frozen=True)
class Traced:
    """A traced service's run: what the client saw, and what the collector received."""

    project: Project
    item_answers: list[httpx.Response]
    untraced_answers: list[httpx.Response]
    spans_before_shutdown: list[ReceivedSpan]
    spans: list[ReceivedSpan]
    collector: Collector
    stop_seconds: float
    returncode: int | None
    output: str


@pytest.fixture(scope="module", params=DRIVERS, ids=lambda driver: f"db_driver={driver}")
def traced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, uv: str, postgres: Any
) -> Iterator[Traced]:
    driver = request.param
    answers = {**ANSWERS, "project_name": "Trace Check", "db_driver": driver}
    project = generate_and_install(answers, tmp_path_factory.mktemp(f"tracing-{driver}"), uv, extra="tracing")
    assert (project.path / "src" / SLUG).is_dir()
    database = migrated_database(project, postgres, f"tracing_{driver}")
    paths = item_paths(database, [f"traced-{n}" for n in range(ITEM_REQUESTS)])
    with fake_collector() as collector:
        settings = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": str(SCHEDULE_DELAY_MS),
        }
        with gunicorn(project, database.url, **settings) as server:
            # Each on a fresh connection, so the kernel may give them to either worker.
            item_answers = [httpx.get(f"{server.url}{path}", timeout=10) for path in paths]
            untraced_answers = [
                httpx.get(f"{server.url}{path}", timeout=10) for path in UNTRACED for _ in range(UNTRACED_REQUESTS)
            ]
            time.sleep(0.2)  # a span ends as its response does
            before = collector.spans()
            stopping = time.monotonic()
        # gunicorn() has sent SIGTERM and waited for the master to exit (SIGKILL after 30 s).
        yield Traced(
            project=project,
            item_answers=item_answers,
            untraced_answers=untraced_answers,
            spans_before_shutdown=before,
            spans=collector.spans(),
            collector=collector,
            stop_seconds=time.monotonic() - stopping,
            returncode=server.process.returncode,
            output=server.output(),
        )


def server_spans(traced: Traced) -> list[ReceivedSpan]:
    return [span for span in traced.spans if span.span.kind == SERVER]


def path_of(span: ReceivedSpan) -> str:
    """The request's path, under the attribute names of either semantic convention."""
    found = span.attributes
    return str(found.get("url.path") or found.get("http.target") or found.get("http.url") or "")


def test_the_service_served_and_stopped_cleanly(traced: Traced) -> None:
    assert [answer.status_code for answer in traced.item_answers] == [200] * ITEM_REQUESTS
    assert [answer.status_code for answer in traced.untraced_answers] == [200] * len(traced.untraced_answers)
    assert traced.returncode == 0, traced.output[-3000:]
    assert "Traceback" not in traced.output, traced.output[-3000:]
    assert traced.collector.problems == []


def test_spans_are_not_lost_at_shutdown(traced: Traced) -> None:
    """The workers' exporters flush at shutdown: the spans arrive after SIGTERM, all of them."""
    assert traced.spans_before_shutdown == [], "exported on schedule: the test no longer proves the flush"
    assert len(server_spans(traced)) == ITEM_REQUESTS, (traced.spans, traced.output[-3000:])


def test_each_request_is_one_server_span_of_its_route_template(traced: Traced) -> None:
    servers = server_spans(traced)
    assert all(span.attributes.get("http.route") == ITEM_ROUTE for span in servers), servers
    assert all(span.span.name == f"GET {ITEM_ROUTE}" for span in servers), servers
    assert len({span.trace_id for span in servers}) == len(servers) == ITEM_REQUESTS
    assert not any(span.parent_id for span in servers), "a server span with a parent: a client sent none"
    # Each of the requests' paths, once.
    paths = sorted(path_of(span) for span in servers)
    assert paths == sorted(str(answer.request.url.path) for answer in traced.item_answers), paths


def test_each_server_span_has_database_spans_under_it(traced: Traced) -> None:
    by_id = {span.span_id: span for span in traced.spans}
    for server in server_spans(traced):
        under = [
            span
            for span in traced.spans
            if span.trace_id == server.trace_id and span.span.kind == CLIENT and server in ancestors(span, by_id)
        ]
        assert under, (server, [span for span in traced.spans if span.trace_id == server.trace_id])
        assert all(span.attributes.get("db.system") == "postgresql" for span in under), under
        assert any("SELECT" in str(span.attributes.get("db.statement", "")) for span in under), under


def test_the_resource_names_the_project(traced: Traced) -> None:
    assert traced.spans
    assert {span.resource.get("service.name") for span in traced.spans} == {SLUG}


def test_probes_and_metrics_yield_no_spans(traced: Traced) -> None:
    """No span of their own, and none of the database work /readyz does: every span exported
    belongs to the trace of an item request."""
    assert not [span for span in traced.spans if path_of(span).startswith(UNTRACED)]
    item_traces = {span.trace_id for span in server_spans(traced)}
    strays = [span for span in traced.spans if span.trace_id not in item_traces]
    assert strays == [], strays


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    found = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        found.append(span)
    return found


def test_the_extra_alone_was_installed(traced: Traced) -> None:
    """The service ran on the `tracing` extra, not on the test extra's copy of its packages."""
    venv = Path(traced.project.bin("python")).parent.parent
    installed = {path.name.split("-")[0].lower() for path in venv.glob("lib/python*/site-packages/*.dist-info")}
    assert "opentelemetry_exporter_otlp_proto_http" in installed, sorted(installed)
    assert "pytest" not in installed, "the test extra is installed too"


def test_the_workers_log_no_errors(traced: Traced) -> None:
    errors = [line for line in traced.output.splitlines() if line.startswith("[ERROR]")]
    assert errors == []
