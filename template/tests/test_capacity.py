"""The capacity plan: CPU detection, the command line, and the checks against the server."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.capacity import ServerNotCheckedError, read_server_limits
from {{ cookiecutter.project_slug }}.cpus import affinity_cpus, available_cpus, cgroup_cpu_quota
from {{ cookiecutter.project_slug }}.db import query_server
from {{ cookiecutter.project_slug }}.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
# Over PostgreSQL's budget, the service connecting to it directly (not through PgBouncer).
OVER_BUDGET = {
    "WEB_CONCURRENCY": "4",
    "DB_POOL_SIZE": "20",
    "DB_MAX_OVERFLOW": "10",
    "PGBOUNCER": "false",
}


def cgroup_tree(root: Path, files: dict[str, str]) -> Path:
    """A fake cgroup mount: files by path under `root`."""
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def self_cgroup(tmp_path: Path, content: str) -> Path:
    """A fake /proc/self/cgroup."""
    path = tmp_path / "self-cgroup"
    path.write_text(content)
    return path


SYSTEMD_UNIT = "0::/system.slice/app.service\n"
V1_UNIT = "4:cpu,cpuacct:/system.slice/app.service\n2:memory:/system.slice/app.service\n"


@pytest.mark.parametrize(
    ("own", "files", "quota"),
    [
        pytest.param("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5, id="v2-namespace-root"),
        pytest.param("0::/\n", {"cpu.max": "max 100000\n"}, None, id="v2-unlimited"),
        pytest.param(
            SYSTEMD_UNIT,
            {"system.slice/app.service/cpu.max": "50000 100000\n"},
            0.5,
            id="v2-systemd-cpuquota",
        ),
        pytest.param(
            SYSTEMD_UNIT,
            {
                "system.slice/cpu.max": "200000 100000",
                "system.slice/app.service/cpu.max": "400000 100000",
            },
            2.0,
            id="v2-tighter-parent",
        ),
        pytest.param(
            SYSTEMD_UNIT,
            {
                "system.slice/cpu.max": "400000 100000",
                "system.slice/app.service/cpu.max": "100000 100000",
            },
            1.0,
            id="v2-tighter-child",
        ),
        pytest.param(
            SYSTEMD_UNIT,
            {"system.slice/cpu.max": "max 100000", "system.slice/app.service/cpu.max": "max"},
            None,
            id="v2-max-everywhere",
        ),
        pytest.param(
            "0::/docker/0123abcd\n", {"cpu.max": "300000 100000"}, 3.0, id="v2-host-path-missing"
        ),
        pytest.param(
            "0::/kubepods/pod1/ctr\n",
            {"kubepods/cpu.max": "800000 100000", "kubepods/pod1/cpu.max": "250000 100000"},
            2.5,
            id="v2-path-missing-below-an-existing-parent",
        ),
        pytest.param("0::/../sibling\n", {"cpu.max": "100000 100000"}, 1.0, id="v2-outside-ns"),
        pytest.param(
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            2.0,
            id="v1",
        ),
        pytest.param(
            "1:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            0.5,
            id="v1-cpuacct",
        ),
        pytest.param(
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
            id="v1-unlimited",
        ),
        pytest.param(
            V1_UNIT,
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "-1",
                "cpu,cpuacct/cpu.cfs_period_us": "100000",
                "cpu,cpuacct/system.slice/cpu.cfs_quota_us": "150000",
                "cpu,cpuacct/system.slice/cpu.cfs_period_us": "100000",
                "cpu,cpuacct/system.slice/app.service/cpu.cfs_quota_us": "-1",
                "cpu,cpuacct/system.slice/app.service/cpu.cfs_period_us": "100000",
            },
            1.5,
            id="v1-nested-tighter-parent",
        ),
        pytest.param(
            V1_UNIT,
            {"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            1.0,
            id="v1-host-path-missing",
        ),
        pytest.param("0::/\n", {}, None, id="no-cgroup-files"),
        pytest.param("", {"cpu.max": "150000 100000"}, 1.5, id="empty-proc-self-cgroup"),
    ],
)
def test_the_tightest_quota_from_the_own_cgroup_up_is_read(
    tmp_path: Path, own: str, files: dict[str, str], quota: float | None
) -> None:
    root = cgroup_tree(tmp_path / "sys-fs-cgroup", files)
    assert cgroup_cpu_quota(root, self_cgroup(tmp_path, own)) == quota


def test_without_proc_self_cgroup_the_mount_root_is_read(tmp_path: Path) -> None:
    root = cgroup_tree(tmp_path / "sys-fs-cgroup", {"cpu.max": "150000 100000"})
    assert cgroup_cpu_quota(root, tmp_path / "no-such-file") == 1.5


def test_a_quota_rounds_up_and_never_exceeds_the_affinity(tmp_path: Path) -> None:
    own = self_cgroup(tmp_path, "0::/\n")
    half = cgroup_tree(tmp_path / "half", {"cpu.max": "50000 100000"})
    huge = cgroup_tree(tmp_path / "huge", {"cpu.max": "6400000 100000"})
    assert available_cpus(half, own) == 1
    assert available_cpus(huge, own) == affinity_cpus()
    assert available_cpus(tmp_path / "none", own) == affinity_cpus()


def run_capacity(
    database_url: str | None, *arguments: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    """`python -m <package>.capacity` as an operator runs it, with only these settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "WEB_", "DATABASE_URL"))
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.project_slug }}.capacity", *arguments],
        env={**env, **environment},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def one_line(stderr: str) -> str:
    """The only line a refusal prints: no traceback, nothing else."""
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    return line


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


def test_the_plan_needs_no_database_url() -> None:
    result = run_capacity(None)
    assert result.returncode == 0, result.stderr
    assert "The plan fits" in result.stdout


# A sitecustomize for the command's interpreter: counts each time a file's module code runs
# (the audit event "exec" fires for every module executed, imported or run as __main__).
COUNT_MODULE_RUNS = """
import atexit, collections, json, os, pathlib, sys

runs = collections.Counter()


def count(event, arguments):
    if event == "exec" and hasattr(arguments[0], "co_filename"):
        runs[arguments[0].co_filename] += 1


sys.addaudithook(count)
atexit.register(lambda: pathlib.Path(os.environ["MODULE_RUNS"]).write_text(json.dumps(runs)))
"""


def test_the_command_runs_each_module_of_the_package_once(tmp_path: Path) -> None:
    """Not once as __main__ and again as an import, with module-level state twice over."""
    (tmp_path / "sitecustomize.py").write_text(COUNT_MODULE_RUNS)
    counted = tmp_path / "runs.json"
    path = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    result = run_capacity(None, PYTHONPATH=os.pathsep.join(path), MODULE_RUNS=str(counted))
    assert result.returncode == 0, result.stderr
    package = (PROJECT / "src" / "{{ cookiecutter.project_slug }}" / "capacity").resolve()
    runs = {
        Path(filename).name: times
        for filename, times in json.loads(counted.read_text()).items()
        if Path(filename).resolve().parent == package
    }
    assert runs == {module.name: 1 for module in package.glob("*.py")}


@pytest.mark.parametrize(
    ("arguments", "environment", "line"),
    [
        pytest.param(
            (),
            {"WEB_CONCURRENCY": "lots"},
            "WEB_CONCURRENCY=lots is not accepted; use a whole number from 1 to 256, or auto",
            id="bad-setting",
        ),
        pytest.param(
            (),
            {"GRACEFUL_TIMEOUT": "5"},
            "GRACEFUL_TIMEOUT=5 is shorter than REQUEST_TIMEOUT=15:",
            id="bad-combination",
        ),
        pytest.param(
            ("--check-server",),
            {},
            "DATABASE_URL is not set; use postgresql://user:password@host:port/database",
            id="check-server-without-database-url",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    arguments: tuple[str, ...], environment: dict[str, str], line: str
) -> None:
    result = run_capacity(None, *arguments, **environment)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).startswith(line)


def test_a_bad_argument_exits_2() -> None:
    result = run_capacity(None, "--check-servers")
    assert result.returncode == 2
    assert "unrecognized arguments: --check-servers" in result.stderr


def test_the_exit_statuses_are_in_the_help() -> None:
    shown = run_capacity(None, "--help").stdout
    for status in ("0 the plan fits", "1 it does not", "2 a setting", "3 the server could not"):
        assert status in " ".join(shown.split())


@pytest.fixture(params=["refused", "silent", "unresolvable"])
def unanswered_url(
    request: pytest.FixtureRequest, unreachable_database_url: str, silent_database_url: str
) -> str:
    """A server that does not answer: nothing listens, it never replies, or its name is unknown."""
    url: str = {
        "refused": unreachable_database_url,
        "silent": silent_database_url,
        "unresolvable": "postgresql://postgres@db.invalid:5432/postgres",
    }[request.param]
    return url.replace("postgres@", "postgres:s3cr3t@")


def test_a_server_that_does_not_answer_exits_3_naming_it(unanswered_url: str) -> None:
    started = time.monotonic()
    result = run_capacity(unanswered_url, "--check-server")
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    line = one_line(result.stderr)
    server = unanswered_url.split("@")[1]
    assert line.startswith("could not check the server postgresql+"), line
    assert f"postgres:***@{server}: " in line
    assert "s3cr3t" not in result.stdout + result.stderr
    assert took < 60, f"gave up only after {took:.1f} s"


def test_the_server_check_gives_up_sooner_than_a_long_pool_timeout(
    monkeypatch: pytest.MonkeyPatch, silent_database_url: str
) -> None:
    monkeypatch.setattr("{{ cookiecutter.project_slug }}.capacity.server.CHECK_TIMEOUT", 1.0)
    settings = Settings(database_url=silent_database_url, db_pool_timeout=30)
    started = time.monotonic()
    with pytest.raises(ServerNotCheckedError, match=r"^could not check the server "):
        read_server_limits(settings, query_server)
    took = time.monotonic() - started
    assert took < 10, f"waited {took:.1f} s, as if for DB_POOL_TIMEOUT"
