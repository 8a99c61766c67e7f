"""A fake OpenTelemetry collector: OTLP over HTTP on loopback, in a thread of the test process.

It accepts what an OTLP/HTTP span exporter sends (POST /v1/traces, a protobuf
ExportTraceServiceRequest, gzip-compressed or not), answers as a collector does, and keeps each
span with the resource and instrumentation scope it came with, for the test to read.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"


def value(any_value: AnyValue) -> Any:
    """An OTLP attribute value as Python (the scalar kinds and arrays of them)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(item) for item in any_value.array_value.values]
    return getattr(any_value, kind)


def attributes(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, with the resource and scope of the batch it came in."""

    span: Span
    resource: dict[str, Any]
    scope: str

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)

    def __repr__(self) -> str:  # short, for assertion messages
        kind = Span.SpanKind.Name(self.span.kind)
        return f"<{kind} {self.span.name!r} trace={self.trace_id[:8]} scope={self.scope}>"


class Collector:
    """What the fake collector received so far; `problems` lists requests it could not take."""

    def __init__(self) -> None:
        self.url = ""  # the traces endpoint, for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        self.exports: list[ExportTraceServiceRequest] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def received(self, export: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.exports.append(export)

    def problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            exports = list(self.exports)
        return [
            ReceivedSpan(span, attributes(resource_spans.resource.attributes), scope_spans.scope.name)
            for export in exports
            for resource_spans in export.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != TRACES_PATH:
                collector.problem(f"POST {self.path}")
                self.send_error(404)
                return
            try:
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest.FromString(body)
            except Exception as error:  # an exporter sending what a collector cannot read
                collector.problem(f"undecodable export ({self.headers.get('Content-Type')}): {error!r}")
                self.send_error(400)
                return
            collector.received(export)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self) -> None:
            collector.problem(f"GET {self.path}")
            self.send_error(405)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

    return Handler


@contextmanager
def fake_collector() -> Iterator[Collector]:
    """A collector on a free loopback port until the block ends."""
    collector = Collector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(collector))
    host, port = server.server_address[:2]
    collector.url = f"http://{host!s}:{port}{TRACES_PATH}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
