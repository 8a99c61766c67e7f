"""Smoke runs of both benchmark commands: they run end to end and write their outputs.

No thresholds on the numbers (CI machines are shared and noisy); the real run is
`uv run python -m benchmarks`, whose output is the committed BENCHMARKS.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.answers import REPO
from tests.support.services import Project, gunicorn, run, service_env

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module")
def benchmarks_run(tmp_path_factory: pytest.TempPathFactory, uv: str) -> tuple[Path, Path]:
    """`python -m benchmarks --quick` on the async variant: (its report, its work folder)."""
    if shutil.which("wrk") is None:
        pytest.fail("the benchmarks need wrk: apt-get install wrk", pytrace=False)
    workdir = tmp_path_factory.mktemp("benchmarks")
    report = workdir / "BENCHMARKS.md"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--variants", "async", "--output", str(report)]
    command += ["--workdir", str(workdir), "--ablations", "orm"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return report, workdir


def test_the_benchmarks_command_writes_a_report(benchmarks_run: tuple[Path, Path]) -> None:
    report_path = benchmarks_run[0]
    report = report_path.read_text()
    for heading in (
        "## The machine",
        "## GET /items/{id}: the variants against a plain FastAPI app",
        "## Knee and overload",
        "### Targets",
        "## Where a request's CPU goes",
        "## The ORM path: POST /items and GET /items",
        "## The threadpool experiment",
        "## What each choice costs",
        "## How it was run",
    ):
        assert heading in report, heading
    for target in ("fastapi", "async"):
        for level in (1, 16):  # the quick run's levels, each target in the main table
            assert f"| {target} | {level} |" in report, (target, level)
        for multiple in ("2x", "5x", "10x"):  # the overload table, sized by each target's knee
            assert f"| {target} | {multiple} |" in report, (target, multiple)
        assert f"| {target} | server CPU per 503" in report, "the refusal cost is judged for each target"
    assert "CPU vs FastAPI" in report
    for level in (1, 16):
        assert f"| fastapi_logged | {level} |" in report, "the bound with only an access line added"
    for request in ("POST /items", "GET /items"):
        for target in ("fastapi_orm", "async"):
            [row] = [line for line in report.splitlines() if line.startswith(f"| {request} | {target} |")]
            assert row.split(" | ")[4] != "0", f"{request} on {target} served nothing: {row}"
            assert row.rstrip(" |").endswith("| 0"), f"{request} on {target} answered errors: {row}"
    profile = report.split("## Where a request's CPU goes")[1].split("\n## ")[0]
    for component in ("SQLAlchemy (pool, execution, greenlets)", "uvicorn's HTTP protocol (httptools)"):
        assert f"| {component} |" in profile, component
    [ablation] = [line for line in report.splitlines() if line.startswith("| as first generated:")]
    served = ablation.split(" | ")[1]  # req/s (slowest-fastest)
    assert not served.startswith("0 "), f"the orm ablation served nothing: {ablation}"
    assert "`def + time.sleep`" in report
    chart = report_path.with_suffix(".png")
    assert f"]({chart.name})" in report, "the report shows the chart beside it"
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_generated_bench_command_writes_a_table_and_a_chart(
    benchmarks_run: tuple[Path, Path], postgres: Any
) -> None:
    project = Project(benchmarks_run[1] / "async" / "project", "async")
    database = postgres.create_database("bench_smoke")
    run([project.bin("alembic"), "upgrade", "head"], cwd=project.path, env=service_env(DATABASE_URL=database))
    out = project.path / "bench-results"
    with gunicorn(project, database, workers=1, BENCH_ENDPOINTS="true") as server:
        command = [project.bin("python"), "-m", "bench", "--url", server.url, "--quick", "--out", str(out)]
        result = subprocess.run(command, cwd=project.path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "threadpool:" in result.stderr, "progress is shown while it runs"
    table = (out / "bench.md").read_text()
    for heading in (
        "## Threadpool: sleeping endpoints",
        "## GET /items/{id}",
        "## The knee",
        "## Overload",
        "## Targets",
    ):
        assert heading in table, table
    assert "**knee**" in table, table
    for multiple in ("2x", "5x", "10x"):
        assert f"| {multiple} |" in table, table
    assert re.search(r"\*\*queue budget\*\*: [\d.]+ ms \((GET /capacity|the default)", table), "and where from"
    assert "**CPU**" in table, "the machine is stated"
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (out / "bench.json").is_file()
