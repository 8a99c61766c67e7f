"""Log lines: one JSON object per line (LOG_FORMAT=json, the default), or text for a person.

gunicorn.conf.py gives `logging_config()` to gunicorn (logconfig_dict). The master applies it
before it forks, so every process writes the same format: gunicorn's own lines, uvicorn's
(uvicorn-worker sends them to gunicorn's handlers), the service's, and the access line.

Every line written while a request runs carries its request ID. The ID is asgi-correlation-id's:
its middleware (installed by main.py, outermost, so even a 503 refusal or a 504 carries it)
takes the client's X-Request-ID when `valid_request_id` accepts it, makes one otherwise, keeps
it in a contextvar and returns it as a response header; its logging filter, on every handler
here, copies it onto each record (request_id; null outside a request).

The access line is the service's own (observe.py), not uvicorn's: uvicorn's knows neither the
route template nor the duration, so the worker turns it off (worker.py) rather than write two
lines per request.
"""

import re
from typing import Any

# What a client may send as X-Request-ID: short, and nothing a log reader could mistake for
# structure (no spaces, quotes or newlines). Anything else is replaced by a generated one.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# The logger of the access line: one per request, with method, route, status and duration.
ACCESS_LOGGER = "{{ cookiecutter.project_slug }}.access"

JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(correlation_id)s"
# Record attributes renamed for readers: "level", not "levelname".
RENAMED = {"levelname": "level", "name": "logger", "correlation_id": "request_id"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


def valid_request_id(value: str) -> bool:
    """Whether a client's X-Request-ID is kept: 1 to 128 of A-Z, a-z, 0-9, '.', '_', '-'."""
    return REQUEST_ID.fullmatch(value) is not None


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The logging.config.dictConfig of every process, in the format LOG_FORMAT names."""
    if log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": RENAMED,
            "timestamp": True,  # ISO 8601, UTC
        }
        missing_id = None
    else:
        formatter = {"format": TEXT_FORMAT}
        missing_id = "-"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "service",
        "filters": ["request_id"],
        "stream": "ext://sys.stdout",
    }
    level = level.upper()
    # Loggers that write through gunicorn's handlers keep them (propagate False): the root's
    # handler would print their lines twice.
    logger = {"level": level, "handlers": ["service"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {
                "()": "asgi_correlation_id.CorrelationIdFilter",
                "default_value": missing_id,
            }
        },
        "formatters": {"service": formatter},
        "handlers": {"service": handler},
        "root": {"level": level, "handlers": ["service"]},
        "loggers": {
            "gunicorn.error": logger,
            "gunicorn.access": {**logger, "level": "INFO"},
            "uvicorn.error": logger,
            "uvicorn.access": {**logger, "level": "INFO"},
            "{{ cookiecutter.project_slug }}": logger,
        },
    }
