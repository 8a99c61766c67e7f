"""Tracing: off by default, on by the OTEL_* environment; a request's spans, in memory."""

from collections.abc import Iterator

import anyio.to_thread
import pytest
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.types import Receive, Scope, Send

from {{ cookiecutter.project_slug }} import tracing
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"},
            False,
        ),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks(environ: dict[str, str], on: bool) -> None:
    assert tracing.enabled(environ) is on


def test_tracing_is_off_by_default(client: TestClient) -> None:
    assert client.app.state.tracer_provider is None  # type: ignore[attr-defined]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


def test_a_request_yields_a_server_span_with_database_children(
    settings: Settings, migrated: None, exporter: InMemorySpanExporter
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings)
    tracing.instrument_app(app, provider)
    with TestClient(app) as client:
        created = client.post("/items", json={"name": "traced"})
        assert created.status_code == 201
        exporter.clear()
        assert client.get(f"/items/{created.json()['id']}").status_code == 200
    spans = exporter.get_finished_spans()
    [server] = [span for span in spans if span.kind == SpanKind.SERVER]
    assert server.attributes is not None
    assert server.attributes.get("http.route") == "/items/{item_id}"
    database = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert database, [span.name for span in spans]
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    for span in database:
        assert server in ancestors(span, by_id), span.name


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span)
    return found


def batching_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """A provider that holds its spans as a service's does, far longer than a test runs."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    return provider


def test_the_lifespan_exports_the_spans_of_the_provider_it_made(
    settings: Settings,
    migrated: None,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker stopped by SIGTERM runs no atexit hook: its spans are exported as its lifespan
    ends, or never."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setattr(tracing, "provider_from_environment", lambda: batching_provider(exporter))
    app = create_app(settings)
    assert app.state.tracer_provider is not None
    with TestClient(app) as client:
        assert client.get("/items/1").status_code == 404
        assert exporter.get_finished_spans() == ()  # still in the batch
    assert [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]


def test_a_provider_given_is_left_to_its_caller(
    settings: Settings, migrated: None, exporter: InMemorySpanExporter
) -> None:
    provider = batching_provider(exporter)
    app = create_app(settings)
    tracing.instrument_app(app, provider)
    with TestClient(app) as client:
        assert client.get("/items/1").status_code == 404
    assert exporter.get_finished_spans() == ()  # not shut down, so not flushed
    provider.force_flush()
    assert [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    provider.shutdown()


@pytest.mark.parametrize(
    ("path", "traced"),
    [("/readyz", False), ("/healthz", False), ("/metrics", False), ("/items/1", True)],
)
def test_the_probes_and_metrics_run_untraced_down_to_their_queries(path: str, traced: bool) -> None:
    """Not only without a server span: /readyz's query, even in a worker thread, makes no span
    either (it would be a trace of its own, every few seconds)."""
    seen: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(is_instrumentation_enabled())
        seen.append(await anyio.to_thread.run_sync(is_instrumentation_enabled))
        await PlainTextResponse("ok")(scope, receive, send)

    client = TestClient(tracing.Untraced(app, tracing.UNTRACED_PATHS))  # no lifespan: not entered
    assert client.get(path).status_code == 200
    assert seen == [traced, traced]
