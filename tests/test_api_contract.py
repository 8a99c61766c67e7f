"""The generated service keeps the contract its OpenAPI document states, checked by schemathesis.

Per db_driver, a generated service runs under gunicorn against its own fresh database, and
`schemathesis run` fetches /openapi.json from it and tests every operation with every check:
no 5xx, only documented status codes, headers and content types, responses that match their
schemas, valid data accepted and invalid data refused, 405s whose Allow header lists the
documented methods, and resources that exist after they are created and are gone after they
are deleted. Phases: coverage (boundary values and unsupported methods, derived from the
schema), fuzzing (random valid and invalid requests), stateful (sequences that follow the
links schemathesis infers, e.g. POST /items then GET, PATCH and DELETE of the new id).

The seed is random on purpose: each run explores new inputs, and a failure prints the seed
and a curl command for each failing request. MAX_EXAMPLES keeps a run within CI's budget.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import Database, Project, gunicorn, migrated_database

pytestmark = pytest.mark.boot

PHASES = ("coverage", "fuzzing", "stateful")
MAX_EXAMPLES = 15  # per operation and phase: about 30 s a variant on two cores
# One request at a time: no 503 is the test's own doing. And schemathesis generating in threads
# on CPython 3.11 was seen to crash in ast.parse ("AST constructor recursion depth mismatch").
SCHEMATHESIS_WORKERS = 1
RUN_TIMEOUT = 180  # seconds


def schemathesis_run(base_url: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/openapi.json",
        "--checks=all",
        f"--phases={','.join(PHASES)}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--workers={SCHEMATHESIS_WORKERS}",
        "--generation-database=none",  # nothing kept between runs, nothing written to the tree
        "--no-color",
    ]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


@pytest.fixture(scope="module")
def contract_database(project: Project, postgres: Any) -> Database:
    """Its own database: the run creates and deletes items that other modules would see."""
    return migrated_database(project, postgres, f"contract_{project.driver}")


def test_the_service_keeps_its_openapi_contract(project: Project, contract_database: Database, tmp_path: Path) -> None:
    with gunicorn(project, contract_database.url) as server:
        result = schemathesis_run(server.url, tmp_path)
    report = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"schemathesis found failures:\n{report}\n\ngunicorn's log:\n{server.output()}"
    # Each phase ran, and the stateful phase found links to follow: the run tested something.
    for phase in PHASES:
        assert f"✅ {phase.capitalize()}" in report, report
    assert "API Links:" in report, report
