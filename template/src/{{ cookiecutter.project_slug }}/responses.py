"""The answers besides success that the OpenAPI document lists, so it says what the service does.

FastAPI documents a route's success and, when it has parameters or a body, its 422. The other
answers come from code FastAPI cannot see (exception handlers, middleware, the body parser),
so the routes declare them with these, as `responses=`.
"""

from typing import Any

from fastapi import status

from .schemas import Message

Responses = dict[int | str, dict[str, Any]]

NOT_FOUND: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": Message, "description": "No item has this id."},
}

# FastAPI's body parser: a body that parses as JSON but does not fit is a 422 instead.
UNREADABLE_BODY: Responses = {
    status.HTTP_400_BAD_REQUEST: {
        "model": Message,
        "description": "The body is not UTF-8 JSON text, or nests deeper than the parser allows.",
    },
}

# overload.py: refusals and database failures are 503, passed deadlines 504; never a 500.
USES_DATABASE: Responses = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": Message,
        "description": "Overloaded, or the database is unavailable: retry later.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0},
            },
        },
    },
    status.HTTP_504_GATEWAY_TIMEOUT: {
        "model": Message,
        "description": "The request ran past its deadline, or its query past statement_timeout.",
    },
}
