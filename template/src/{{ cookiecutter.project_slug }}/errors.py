"""How the service answers requests it cannot read (422) or route (405), in FastAPI's shapes.

422: FastAPI's own handler echoes each error's `input`, and some of what Python's JSON parser
accepts cannot be written back as JSON: a lone surrogate escape ("\\ud800") decodes to a str that
UTF-8 cannot encode, and NaN, Infinity and -Infinity are not JSON. Either turned the 422 into a
500. Rather than drop the echo (clients and people read it to see what was refused), this
handler keeps FastAPI's shape, {"detail": [{"type", "loc", "msg", "input", "ctx"}]}, and makes
every value in it one JSON can carry:

- a lone surrogate becomes U+FFFD, the replacement character, as a UTF-8 decoder shows bytes
  it cannot read;
- a non-finite float becomes the string the client sent: "NaN", "Infinity" or "-Infinity";
- an input larger than INPUT_ECHO_LIMIT characters of JSON, or nested deeper than
  INPUT_ECHO_DEPTH, is left out (`input` is optional in the documented error): a refused
  megabyte is not sent back, and a deep one cannot exhaust the stack on its way out.

A body that is not UTF-8, or is nested past the parser's limit, never gets this far: FastAPI
answers it 400 {"detail": "There was an error parsing the body"} (see responses.py). Surrogates
written as UTF-8 bytes are the exception: Python's parser lets them through as lone surrogates.

500: an exception no handler takes is answered by Starlette's outermost middleware, outside the
request ID's, so its 500 went out without X-Request-ID, the one answer an operator most needs
to find in the log. `internal_error` answers it with the ID; the exception then goes on to be
logged with its traceback (and the same ID) as before.

405: Starlette's router answers with the Allow header of the first route whose path matched,
so `PUT /items/1` said `Allow: GET` although PATCH and DELETE are served there too. The Allow
header is made here from the OpenAPI document: every method it lists for the path.
"""

import json
import math
import re
from contextlib import suppress
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

INPUT_ECHO_LIMIT = 1_000  # characters of JSON
INPUT_ECHO_DEPTH = 32  # levels of nesting

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
NON_FINITE: dict[float, str] = {math.inf: "Infinity", -math.inf: "-Infinity"}


class _InputNotEchoedError(Exception):
    """The input is too large or too deep to send back."""


def json_safe(value: object) -> object:
    """`value` (already made JSON-like by jsonable_encoder) with nothing JSON cannot carry."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return NON_FINITE.get(value, "NaN")
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def echo(value: object) -> object:
    """The input as the answer may carry it; raises _InputNotEchoedError if it is too large or deep.

    Measured as it is walked, so a refused megabyte costs no more than the limit to look at.
    """
    budget = INPUT_ECHO_LIMIT

    def walk(item: object, depth: int) -> object:
        nonlocal budget
        budget -= len(item) if isinstance(item, str) else 1
        if budget < 0 or depth > INPUT_ECHO_DEPTH:
            raise _InputNotEchoedError
        if isinstance(item, dict):
            return {walk(key, depth + 1): walk(part, depth + 1) for key, part in item.items()}
        if isinstance(item, list | tuple):
            return [walk(part, depth + 1) for part in item]
        return item

    safe = json_safe(jsonable_encoder(walk(value, 0)))
    if len(json.dumps(safe, ensure_ascii=False)) > INPUT_ECHO_LIMIT:
        raise _InputNotEchoedError
    return safe


def safe_error(error: dict[str, Any]) -> dict[str, Any]:
    safe = {key: json_safe(jsonable_encoder(item)) for key, item in error.items() if key != "input"}
    if "input" in error:
        with suppress(_InputNotEchoedError):  # then the error goes without its input
            safe["input"] = echo(error["input"])
    return safe


async def unprocessable(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return JSONResponse(
        {"detail": [safe_error(dict(item)) for item in error.errors()]},
        status_code=422,  # HTTP_422_UNPROCESSABLE_CONTENT has this name in recent Starlette only
    )


def allowed_methods(app: FastAPI, path: str) -> str | None:
    """The methods the OpenAPI document lists for `path`, as an Allow header says them."""
    if not hasattr(app.state, "allow_by_path"):  # made once, on the first 405
        app.state.allow_by_path = [
            (compile_path(template)[0], ", ".join(method.upper() for method in operations))
            for template, operations in app.openapi()["paths"].items()
        ]
    return next((allow for regex, allow in app.state.allow_by_path if regex.match(path)), None)


async def http_error(request: Request, error: Exception) -> Response:
    """FastAPI's own answer, with a complete Allow header on a 405."""
    assert isinstance(error, HTTPException)
    if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        if allow := allowed_methods(request.app, path):
            headers = {**(error.headers or {}), "Allow": allow}
            error = HTTPException(error.status_code, error.detail, headers=headers)
    return await http_exception_handler(request, error)


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    """A bug's 500, with the request's ID (set by the request ID middleware, still current)."""
    request_id = correlation_id.get()
    headers = {"X-Request-ID": request_id} if request_id else None
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, unprocessable)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)  # Starlette's outermost middleware
