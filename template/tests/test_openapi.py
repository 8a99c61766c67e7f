"""The OpenAPI document says what the service answers, and the service answers what it says."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings

# The answers each operation documents besides its success and 422, declared as the
# service gives them: see responses.py and overload.py.
DATABASE = {"503", "504"}
DOCUMENTED = {
    ("/items", "post"): DATABASE | {"400"},
    ("/items", "get"): DATABASE,
    ("/items/{item_id}", "get"): DATABASE | {"404"},
    ("/items/{item_id}", "patch"): DATABASE | {"400", "404"},
    ("/items/{item_id}", "delete"): DATABASE | {"404"},
}

# Every method served at a path, whichever route of it the request found first.
ALLOWED = {
    "/items": {"GET", "POST"},
    "/items/1": {"GET", "PATCH", "DELETE"},
    "/healthz": {"GET"},
    "/readyz": {"GET"},
    "/capacity": {"GET"},
}


@pytest.fixture(scope="module")
def openapi(settings: Settings) -> dict[str, Any]:
    document: dict[str, Any] = create_app(settings).openapi()
    return document


@pytest.mark.parametrize(("path", "method"), DOCUMENTED)
def test_each_item_operation_documents_its_failures(
    openapi: dict[str, Any], path: str, method: str
) -> None:
    responses = openapi["paths"][path][method]["responses"]
    assert DOCUMENTED[path, method] | {"422"} <= set(responses)
    assert responses["503"]["headers"]["Retry-After"]["schema"]["type"] == "integer"


def test_patch_does_not_offer_a_null_name(openapi: dict[str, Any]) -> None:
    """The service refuses `"name": null` with a 422: the schema must not allow it."""
    name = openapi["components"]["schemas"]["ItemUpdate"]["properties"]["name"]
    assert name.get("type") == "string", name
    assert "anyOf" not in name
    assert "name" not in openapi["components"]["schemas"]["ItemUpdate"].get("required", [])


def test_the_documented_methods_are_the_served_ones(openapi: dict[str, Any]) -> None:
    documented = {
        path.replace("{item_id}", "1"): {method.upper() for method in operations}
        for path, operations in openapi["paths"].items()
    }
    assert documented == ALLOWED


NOT_SERVED = [
    (method, path)
    for path, allowed in ALLOWED.items()
    for method in ("PUT", "POST", "PATCH", "DELETE")
    if method not in allowed
]


@pytest.mark.parametrize(("method", "path"), NOT_SERVED)
def test_405_allows_every_method_of_the_path(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == ALLOWED[path]
    assert response.json() == {"detail": "Method Not Allowed"}
