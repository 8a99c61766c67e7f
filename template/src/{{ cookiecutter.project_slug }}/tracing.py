"""OpenTelemetry tracing: off unless the standard OTEL_* environment asks for it.

On when OTEL_SDK_DISABLED=false, or OTEL_TRACES_EXPORTER names an exporter (otlp, console), or
an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keep it off whatever else is set. The rest
of the configuration (service name, endpoint, headers, sampler) is the SDK's own, from the same
environment.

The packages are the `tracing` extra (`pip install '.[tracing]'`, `uv sync --extra tracing`),
imported only when tracing is on: a service without it neither installs nor loads them. Each
worker makes its own tracer provider (create_app runs after the fork), so no exporter thread is
shared across processes, and shuts it down as its lifespan ends, which exports the spans it
still holds (exported_at_shutdown). Instrumented: FastAPI (a server span per request), SQLAlchemy
(a span per statement, where its instrumentation supports the SQLAlchemy installed) and the
driver ({{ 'asyncpg' if cookiecutter.db_driver == 'async' else 'psycopg' }}).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy import Engine
    from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# /metrics and the probes are asked every few seconds: spans of them would drown the rest.
UNTRACED_PATHS = ("/metrics", "/healthz", "/readyz")


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* environment asks for traces."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower()
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if disabled == "true" or exporter == "none":
        return False
    return disabled == "false" or bool(exporter) or any(environ.get(name) for name in ENDPOINTS)


def provider_from_environment() -> TracerProvider:
    """A tracer provider exporting as OTEL_TRACES_EXPORTER says: otlp (over HTTP) or console."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over this default name.
    resource = Resource.create({"service.name": "{{ cookiecutter.project_slug }}"})
    provider = TracerProvider(resource=resource)
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    for name in exporters.split(","):
        exporter: SpanExporter
        if name.strip() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider | None = None) -> None:
    """Trace the app's requests, and (through app.state) the engine the lifespan opens.

    With no provider given, one is made from the environment, and the lifespan shuts it down
    (exported_at_shutdown); a provider given is its caller's to shut down.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from .db import instrument_driver

    own = provider is None
    provider = provider or provider_from_environment()
    app.state.tracer_provider = provider
    app.state.own_tracer_provider = provider if own else None
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=",".join(UNTRACED_PATHS)
    )
    app.add_middleware(Untraced, paths=UNTRACED_PATHS)
    instrument_driver(provider)  # db.py: this project's driver


class Untraced:
    """Requests to these paths run with instrumentation suppressed, queries and all.

    Excluding a path from FastAPIInstrumentor only drops the request's server span: the queries
    /readyz runs would still be traced, each a trace of its own with no request above it.
    """

    def __init__(self, app: ASGIApp, paths: tuple[str, ...]) -> None:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        self.app = app
        self.paths = frozenset(paths)
        self.suppressed = suppress_instrumentation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            with self.suppressed():  # a context variable: threads the request starts inherit it
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def instrument_engine(engine: Engine, provider: TracerProvider) -> None:
    """A span per statement the engine runs, children of the request's span, where the
    SQLAlchemy instrumentation supports the SQLAlchemy installed.

    Where it does not (a new SQLAlchemy release comes before the instrumentation's), it would
    log an error in every worker and make no spans: the driver's spans still cover every
    statement, so the worker says so once, at INFO, and goes on.
    """
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
    if conflict is not None:
        logger.info("no SQLAlchemy spans (the driver's spans remain): %s", conflict)
        return
    instrumentor.instrument(engine=engine, tracer_provider=provider)


@asynccontextmanager
async def exported_at_shutdown(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs; then the tracer provider instrument_app made is shut down, which
    exports what its batches still hold (up to OTEL_BSP_SCHEDULE_DELAY, 5 s, of spans).

    The SDK's own atexit hook is not enough: a worker stopped by SIGTERM ends by raising the
    signal again with its default action (uvicorn does, after the lifespan), and a process killed
    by a signal runs no atexit hooks, so every deploy would lose each worker's last spans.
    """
    try:
        yield
    finally:
        provider = getattr(app.state, "own_tracer_provider", None)
        if provider is not None:
            # Blocking (the export waits for the collector, up to OTEL_EXPORTER_OTLP_TIMEOUT):
            # in a thread, off the event loop.
            await anyio.to_thread.run_sync(provider.shutdown)
