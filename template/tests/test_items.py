"""The items resource over HTTP, against the real database."""

from typing import Any

import pytest
from fastapi.testclient import TestClient


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/items", json={"name": "widget", **body})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def test_create_returns_the_item(client: TestClient) -> None:
    item = create(client, name="widget", description="a small part")
    assert item["name"] == "widget"
    assert item["description"] == "a small part"
    assert isinstance(item["id"], int)
    assert item["created_at"]  # set by the database


def test_create_without_description(client: TestClient) -> None:
    assert create(client)["description"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 201},
        {"name": 42},
        {"name": None},
        {"name": "nul\x00byte"},
        {"name": "ok", "unknown": 1},
    ],
)
def test_create_refuses_bad_bodies(client: TestClient, body: dict[str, Any]) -> None:
    assert client.post("/items", json=body).status_code == 422


def test_create_refuses_a_body_that_is_not_json(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    response = client.post("/items", content=b"not json", headers=headers)
    assert response.status_code == 422


def test_get_returns_the_item(client: TestClient) -> None:
    item = create(client)
    response = client.get(f"/items/{item['id']}")
    assert response.status_code == 200
    assert response.json() == item


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_missing_item_is_404(client: TestClient, method: str) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = client.request(method, "/items/999999", json=body)
    assert response.status_code == 404


@pytest.mark.parametrize("item_id", ["0", "-1", "abc", str(2**63)])
def test_bad_item_id_is_422(client: TestClient, item_id: str) -> None:
    assert client.get(f"/items/{item_id}").status_code == 422


def test_list_pages_in_id_order(client: TestClient) -> None:
    ids = [create(client, name=f"item {n}")["id"] for n in range(5)]
    assert [item["id"] for item in client.get("/items").json()] == ids
    page = client.get("/items", params={"limit": 2, "offset": 1})
    assert page.status_code == 200
    assert [item["id"] for item in page.json()] == ids[1:3]
    assert client.get("/items", params={"offset": 5}).json() == []


def test_list_default_limit_is_20(client: TestClient) -> None:
    for n in range(21):
        create(client, name=f"item {n}")
    assert len(client.get("/items").json()) == 20
    assert len(client.get("/items", params={"limit": 100}).json()) == 21


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "many"}, {"offset": -1}, {"offset": 2**63}],
)
def test_list_refuses_out_of_bounds_paging(client: TestClient, params: dict[str, Any]) -> None:
    assert client.get("/items", params=params).status_code == 422


def test_patch_changes_only_the_fields_given(client: TestClient) -> None:
    item = create(client, name="before", description="kept")
    response = client.patch(f"/items/{item['id']}", json={"name": "after"})
    assert response.status_code == 200
    assert response.json() == {**item, "name": "after"}
    assert client.get(f"/items/{item['id']}").json() == {**item, "name": "after"}


def test_patch_can_clear_the_description(client: TestClient) -> None:
    item = create(client, description="to clear")
    response = client.patch(f"/items/{item['id']}", json={"description": None})
    assert response.json()["description"] is None


@pytest.mark.parametrize("body", [{"name": None}, {"name": ""}, {"id": 7}, {"created_at": "x"}])
def test_patch_refuses_bad_bodies(client: TestClient, body: dict[str, Any]) -> None:
    item = create(client)
    assert client.patch(f"/items/{item['id']}", json=body).status_code == 422
    assert client.get(f"/items/{item['id']}").json() == item


def test_delete_removes_the_item(client: TestClient) -> None:
    item = create(client)
    response = client.delete(f"/items/{item['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/items/{item['id']}").status_code == 404
    assert client.delete(f"/items/{item['id']}").status_code == 404
