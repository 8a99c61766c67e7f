"""The capacity plan: CPU detection, the command line, and the checks against the server."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.cpus import affinity_cpus, available_cpus, cgroup_cpu_quota

PROJECT = Path(__file__).resolve().parents[1]
# Over PostgreSQL's budget, the service connecting to it directly (not through PgBouncer).
OVER_BUDGET = {
    "WEB_CONCURRENCY": "4",
    "DB_POOL_SIZE": "20",
    "DB_MAX_OVERFLOW": "10",
    "PGBOUNCER": "false",
}


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        pytest.param({"cpu.max": "150000 100000\n"}, 1.5, id="v2-quota"),
        pytest.param({"cpu.max": "max 100000\n"}, None, id="v2-unlimited"),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0, id="v1"
        ),
        pytest.param(
            {"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            0.5,
            id="v1-cpuacct",
        ),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
            id="v1-unlimited",
        ),
        pytest.param({}, None, id="no-cgroup"),
    ],
)
def test_the_cgroup_quota_is_read(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    assert cgroup_cpu_quota(cgroup(tmp_path, files)) == quota


def test_a_quota_rounds_up_and_never_exceeds_the_affinity(tmp_path: Path) -> None:
    half = cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})
    huge = cgroup(tmp_path / "huge", {"cpu.max": "6400000 100000"})
    assert available_cpus(half) == 1
    assert available_cpus(huge) == affinity_cpus()
    assert available_cpus(tmp_path / "none") == affinity_cpus()


def run_capacity(
    database_url: str, *arguments: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    """`python -m <package>.capacity` as an operator runs it, with only these settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DB_", "WEB_"))}
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.project_slug }}.capacity", *arguments],
        env={**env, "DATABASE_URL": database_url, **environment},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_command_prints_the_plan_and_exits_0_when_it_fits(database_url: str) -> None:
    result = run_capacity(database_url)
    assert result.returncode == 0, result.stderr
    assert "| peak connections" in result.stdout
    assert "The plan fits" in result.stdout


def test_the_command_exits_1_with_the_numbers_when_it_does_not_fit(database_url: str) -> None:
    result = run_capacity(database_url, **OVER_BUDGET)
    assert result.returncode == 1
    assert "| peak connections" in result.stdout
    assert "x 4 x (20 + 10)" in result.stderr
    assert "WEB_CONCURRENCY=4, DB_POOL_SIZE=20" in result.stderr


def test_the_server_check_reads_the_real_limits(database_url: str) -> None:
    result = run_capacity(database_url, "--check-server")
    assert result.returncode == 0, result.stderr
    assert "superuser_reserved_connections" in result.stdout
    assert "connections in use" in result.stdout
