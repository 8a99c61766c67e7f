"""Every supported answer combination renders, identically under copier and cookiecutter."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.generation import TOOLS, Generated, copier_questions, generate, tree

DRIVERS = ("async", "sync")
TARGETS = ("docker-compose", "kubernetes", "systemd")
COMBINATIONS = [
    {"db_driver": driver, "deployment_target": target} for driver, target in itertools.product(DRIVERS, TARGETS)
]

# Files that only exist for some answers: (path, answer key, the answer that keeps it).
CONDITIONAL_FILES = [
    ("compose.yaml", "deployment_target", "docker-compose"),
    (".env.example", "deployment_target", "docker-compose"),
    ("deploy/kubernetes/kustomization.yaml", "deployment_target", "kubernetes"),
    ("deploy/systemd/{slug}.service", "deployment_target", "systemd"),
]
ALWAYS_PRESENT = [
    "pyproject.toml",
    "README.md",
    "gunicorn.conf.py",
    "Dockerfile",
    ".dockerignore",
    "alembic.ini",
    "migrations/env.py",
    "src/{slug}/defaults.py",
    "src/{slug}/settings.py",
    "src/{slug}/db.py",
    "src/{slug}/main.py",
    "src/{slug}/api/items.py",
    "tests/conftest.py",
    "tests/postgres_server.py",
]
SLUG = "my_service"


def combination_id(answers: dict[str, str]) -> str:
    return "-".join(f"{value}" for value in answers.values())


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Generated]:
    """The same answers rendered by each tool."""
    answers = request.param
    workdir = tmp_path_factory.mktemp(combination_id(answers))
    results = {tool: generate(tool, answers, workdir / tool) for tool in TOOLS}
    for result in results.values():
        assert result.ok, f"{result.tool} refused {answers}: {result.error}"
    return results


def project(rendered: dict[str, Generated], tool: str = "copier") -> Path:
    path = rendered[tool].project
    assert path is not None
    return path


def test_both_tools_render_the_same_files_byte_for_byte(rendered: dict[str, Generated]) -> None:
    by_copier = tree(project(rendered, "copier"))
    by_cookiecutter = tree(project(rendered, "cookiecutter"))
    assert by_copier.pop(".copier-answers.yml"), "copier writes its answers file"
    assert sorted(by_copier) == sorted(by_cookiecutter)
    differing = [path for path in by_copier if by_copier[path] != by_cookiecutter[path]]
    assert differing == []


def test_no_template_syntax_is_left_in_the_output(rendered: dict[str, Generated]) -> None:
    leftovers = [
        f"{path}: {marker!r}"
        for path, content in tree(project(rendered)).items()
        for marker in ("{{", "{%", "cookiecutter.")
        if marker.encode() in content and path != ".copier-answers.yml"
    ]
    assert leftovers == []


def test_the_copier_answers_file_stores_the_questions_only(rendered: dict[str, Generated]) -> None:
    stored = yaml.safe_load((project(rendered) / ".copier-answers.yml").read_text())
    answered = {key for key in stored if not key.startswith("_")}
    assert answered == set(copier_questions())


def test_the_chosen_answers_decide_which_files_exist(rendered: dict[str, Generated]) -> None:
    root = project(rendered)
    answers = rendered_answers(root)
    for template in ALWAYS_PRESENT:
        assert (root / template.format(slug=SLUG)).is_file(), template
    for template, key, keeps in CONDITIONAL_FILES:
        path = root / template.format(slug=SLUG)
        assert path.is_file() == (answers[key] == keeps), f"{template} with {key}={answers[key]}"
    assert not any(path.is_dir() and not any(path.iterdir()) for path in root.rglob("*")), "no empty folders"


def test_only_the_chosen_driver_is_a_dependency(rendered: dict[str, Generated]) -> None:
    root = project(rendered)
    pyproject = (root / "pyproject.toml").read_text()
    chosen, other = ("asyncpg", "psycopg") if rendered_answers(root)["db_driver"] == "async" else ("psycopg", "asyncpg")
    assert chosen in pyproject
    assert other not in pyproject


def test_the_generated_code_is_ruff_clean(rendered: dict[str, Generated]) -> None:
    root = project(rendered)
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=root, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def rendered_answers(root: Path) -> dict[str, str]:
    return yaml.safe_load((root / ".copier-answers.yml").read_text())
