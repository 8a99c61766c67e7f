"""Request IDs, the access line, /metrics and the log configuration, in one process.

Under TestClient there is no PROMETHEUS_MULTIPROC_DIR: /metrics reports this process's default
registry, whose counters other tests have moved too, so these tests compare before and after.
"""

import json
import logging
import pydoc
import re
from typing import Any

import pytest
from asgi_correlation_id import correlation_id
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.logs import ACCESS_LOGGER, logging_config, valid_request_id
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings


@pytest.mark.parametrize("value", ["a", "0123456789abcdef" * 8, "client-id_1.A", "ABC.def-ghi_0"])
def test_a_reasonable_request_id_is_accepted(value: str) -> None:
    assert valid_request_id(value)


@pytest.mark.parametrize(
    "value", ["", "x" * 129, "two words", "semi;colon", "new\nline", 'quo"te', "ünïcode", "a/b"]
)
def test_a_malformed_request_id_is_not(value: str) -> None:
    assert not valid_request_id(value)


def test_a_valid_request_id_is_returned_as_sent(client: TestClient) -> None:
    answer = client.get("/healthz", headers={"X-Request-ID": "from-the-client.1"})
    assert answer.headers["X-Request-ID"] == "from-the-client.1"


def test_a_malformed_or_missing_request_id_is_replaced(client: TestClient) -> None:
    replaced = client.get("/healthz", headers={"X-Request-ID": "not valid!"})
    made = client.get("/healthz")
    for answer in (replaced, made):
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
    assert replaced.headers["X-Request-ID"] != made.headers["X-Request-ID"]


def test_a_refusal_and_a_404_carry_the_request_id(client: TestClient) -> None:
    gate = client.app.state.admission  # type: ignore[attr-defined]
    gate.free, gate.mean_hold = 0, 60.0  # every connection held for a minute: refused at once
    try:
        refused = client.get("/items/1", headers={"X-Request-ID": "refused-1"})
    finally:
        gate.free, gate.mean_hold = gate.permits, 0.0
    assert refused.status_code == 503
    assert refused.headers["X-Request-ID"] == "refused-1"
    missing = client.get("/nowhere", headers={"X-Request-ID": "missing-1"})
    assert missing.headers["X-Request-ID"] == "missing-1"


def test_a_bugs_500_carries_the_request_id(settings: Settings, migrated: None) -> None:
    app = create_app(settings)

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/broken", headers={"X-Request-ID": "bug-1"})
    assert answer.status_code == 500
    assert answer.json() == {"detail": "Internal Server Error"}
    assert answer.headers["X-Request-ID"] == "bug-1"


def count(metrics: str, route: str, status: int) -> float:
    labels = f'method="GET",route="{route}",status="{status}"'
    pattern = "^http_requests_total" + re.escape("{" + labels + "}") + r" (\S+)$"
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    before = client.get("/metrics").text
    for item_id in (1, 2, 3):
        client.get(f"/items/{item_id}")
    client.get("/nowhere/at/all")
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    assert count(after.text, "/items/{item_id}", 404) == count(before, "/items/{item_id}", 404) + 3
    assert count(after.text, "unmatched", 404) == count(before, "unmatched", 404) + 1
    assert "/items/1" not in after.text  # paths are not labels
    assert re.search(r"^http_requests_in_flight 1\.0$", after.text, re.MULTILINE)


def test_the_access_line_says_method_route_status_and_duration(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.get("/items/7", headers={"X-Request-ID": "access-1"})
    [line] = [record for record in caplog.records if record.name == ACCESS_LOGGER]
    assert line.__dict__["method"] == "GET"
    assert line.__dict__["route"] == "/items/{item_id}"
    assert line.__dict__["status"] == 404
    assert line.__dict__["duration_ms"] >= 0


def built(config: dict[str, Any]) -> Any:
    """An object a dictConfig entry names with "()", made as dictConfig makes it."""
    config = dict(config)
    factory = pydoc.locate(config.pop("()"))
    assert callable(factory)
    return factory(**config)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_lines_carry_the_request_id(log_format: str) -> None:
    """The configuration's own formatter and filter (not applied: that would reconfigure
    logging for every other test), on a record written while a request runs."""
    config = logging_config(log_format, "info")
    assert config["handlers"]["service"]["filters"] == ["request_id"]
    request_filter = built(config["filters"]["request_id"])
    formatter_config = config["formatters"]["service"]
    if "()" in formatter_config:
        formatter = built(formatter_config)
    else:
        formatter = logging.Formatter(formatter_config["format"])
    name = "{{ cookiecutter.project_slug }}.x"
    record = logging.LogRecord(name, logging.INFO, __file__, 1, "said %s", ("this",), None)
    record.status = 200
    token = correlation_id.set("line-1")
    try:
        request_filter.filter(record)
    finally:
        correlation_id.reset(token)
    line = formatter.format(record)
    if log_format == "text":
        assert "INFO {{ cookiecutter.project_slug }}.x [line-1] said this" in line
        return
    fields = json.loads(line)
    assert fields["message"] == "said this"
    assert fields["request_id"] == "line-1"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "{{ cookiecutter.project_slug }}.x"
    assert fields["status"] == 200
    assert "timestamp" in fields
