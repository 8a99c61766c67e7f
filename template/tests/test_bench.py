"""The sleeping endpoints of api/bench.py (for `python -m bench`) exist only on request."""

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_bench_endpoints_are_off_by_default(client: TestClient, kind: str) -> None:
    assert client.get(f"/bench/sleep/{kind}", params={"seconds": 0}).status_code == 404


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_bench_endpoints_true_turns_them_on(settings: Settings, kind: str) -> None:
    app = create_app(Settings(database_url=settings.database_url, bench_endpoints=True))
    with TestClient(app) as client:
        response = client.get(f"/bench/sleep/{kind}", params={"seconds": 0.01})
        assert response.status_code == 200, response.text
        assert response.json() == {"seconds": 0.01}
        assert client.get(f"/bench/sleep/{kind}", params={"seconds": 11}).status_code == 422
