"""Bodies the service refuses get a well-formed JSON answer, whatever bytes they held.

Python's JSON parser accepts what JSON cannot say back (NaN, Infinity, lone surrogate escapes),
and the 422 echoes the input: each body here once made that answer a 500. Every answer is parsed
strictly: UTF-8, no NaN or Infinity, no lone surrogates (which strict parsers refuse).
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.errors import INPUT_ECHO_LIMIT
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings

TOO_DEEP = 100_000  # past the JSON parser's nesting limit
DEEP = 500  # within it
HUGE = 2 * 1024 * 1024  # bytes

# What each body is answered: 422 when it parses as JSON or fails as JSON would, 400 when it
# cannot be read as JSON text at all (not UTF-8, or nested past the parser's limit).
ODD_BODIES: dict[str, tuple[bytes, int]] = {
    "lone high surrogate": (b'{"name": "\\ud800"}', 422),
    "lone low surrogate": (b'{"name": "a\\udfffb"}', 422),
    "lone surrogate in a key": (b'{"name": "ok", "\\udc00": 1}', 422),
    "NaN": (b'{"name": NaN}', 422),
    "Infinity": (b'{"name": Infinity}', 422),
    "-Infinity": (b'{"name": -Infinity}', 422),
    "NaN as description": (b'{"name": "ok", "description": NaN}', 422),
    "all of them nested": (b'{"name": {"\\ud800": [NaN, Infinity, -Infinity, "\\udbff"]}}', 422),
    "a whole body of NaN": (b"NaN", 422),
    "deeply nested": (b'{"name": ' + b"[" * DEEP + b"]" * DEEP + b"}", 422),
    "nested past the parser's limit": (b"[" * TOO_DEEP + b"]" * TOO_DEEP, 400),
    "a huge name": (b'{"name": "' + b"x" * HUGE + b'"}', 422),
    "a huge list": (b"[" + b"0," * (HUGE // 2) + b"0]", 422),
    "invalid UTF-8": (b'{"name": "\xff\xfe"}', 400),
    # U+D800 written as UTF-8, which is no character: Python's parser lets it through as a lone
    # surrogate, so the JSON parses and the name does not.
    "UTF-8 of a surrogate": (b'{"name": "\xed\xa0\x80"}', 422),
    "not JSON": (b"not json", 422),
    "truncated JSON": (b'{"name": "ok"', 422),
}

ROUTES = [("POST", "/items"), ("PATCH", "/items/1")]


@pytest.fixture(scope="module")
def app_client(settings: Settings) -> Iterator[TestClient]:
    """One app for the module: every request here is refused before it reaches the database."""
    with TestClient(create_app(settings)) as client:
        yield client


def refuse_constant(name: str) -> None:
    raise AssertionError(f"the answer holds {name}, which JSON does not have")


def assert_no_surrogates(value: Any) -> None:
    if isinstance(value, str):
        assert not any(0xD800 <= ord(char) <= 0xDFFF for char in value), value
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_no_surrogates(key)
            assert_no_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_surrogates(item)


def strict_json(content: bytes) -> Any:
    parsed = json.loads(content.decode("utf-8"), parse_constant=refuse_constant)
    assert_no_surrogates(parsed)
    return parsed


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[method for method, _ in ROUTES])
@pytest.mark.parametrize("case", ODD_BODIES)
def test_an_odd_body_gets_a_json_answer(
    app_client: TestClient, method: str, path: str, case: str
) -> None:
    body, status = ODD_BODIES[case]
    headers = {"content-type": "application/json"}
    response = app_client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    answer = strict_json(response.content)
    if status == 400:
        assert isinstance(answer["detail"], str)
        return
    # FastAPI's shape, so clients keep working: a list of {type, loc, msg, input?, ctx?}.
    assert answer["detail"], answer
    for error in answer["detail"]:
        assert isinstance(error["type"], str)
        assert isinstance(error["msg"], str)
        assert all(isinstance(part, str | int) for part in error["loc"])
        assert set(error) <= {"type", "loc", "msg", "input", "ctx"}
        assert len(json.dumps(error.get("input"), ensure_ascii=False)) <= INPUT_ECHO_LIMIT


@pytest.mark.parametrize(
    ("body", "echoed"),
    [
        (b'{"name": "\\ud800"}', "\ufffd"),
        (b'{"name": "a\\udfffb"}', "a\ufffdb"),
        (b'{"name": NaN}', "NaN"),
        (b'{"name": Infinity}', "Infinity"),
        (b'{"name": -Infinity}', "-Infinity"),
        (b'{"name": 42}', 42),
        (b'{"name": ""}', ""),
    ],
)
def test_the_input_is_echoed_as_json_can_say_it(
    app_client: TestClient, body: bytes, echoed: object
) -> None:
    headers = {"content-type": "application/json"}
    response = app_client.post("/items", content=body, headers=headers)
    assert response.status_code == 422
    [error] = strict_json(response.content)["detail"]
    assert error["loc"] == ["body", "name"]
    assert error["input"] == echoed


def test_an_input_too_large_to_echo_is_left_out(app_client: TestClient) -> None:
    name = "x" * INPUT_ECHO_LIMIT
    response = app_client.post("/items", json={"name": name})
    assert response.status_code == 422
    [error] = strict_json(response.content)["detail"]
    assert error["type"] == "string_too_long"
    assert "input" not in error
