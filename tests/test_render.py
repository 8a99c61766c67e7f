"""Every supported answer combination renders, identically under copier and cookiecutter."""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import Environment, StrictUndefined

from tests.support.answers import DRIVERS, REPO, TARGETS, TOOLS, copier_questions
from tests.support.generation import Generated, generate, tree

COMBINATIONS = [
    {"db_driver": driver, "deployment_target": target, "pgbouncer": False}
    for driver, target in itertools.product(DRIVERS, TARGETS)
]
# PgBouncer changes the engine (per driver) and adds files (per target): each target once, both
# drivers among them, rather than the whole cross product again.
COMBINATIONS += [
    {"db_driver": "async", "deployment_target": "docker-compose", "pgbouncer": True},
    {"db_driver": "sync", "deployment_target": "kubernetes", "pgbouncer": True},
    {"db_driver": "async", "deployment_target": "systemd", "pgbouncer": True},
]


def target_is(target: str, pgbouncer: bool | None = None) -> Callable[[dict[str, Any]], bool]:
    """Whether a file belongs to these answers: the target's, and with or without PgBouncer."""
    return lambda answers: answers["deployment_target"] == target and pgbouncer in (None, answers["pgbouncer"])


# Files that only exist for some answers: (path, whether these answers keep it).
CONDITIONAL_FILES = [
    ("compose.yaml", target_is("docker-compose")),
    (".env.example", target_is("docker-compose")),
    ("pgbouncer.ini", target_is("docker-compose", pgbouncer=True)),
    ("deploy/kubernetes/kustomization.yaml", target_is("kubernetes")),
    ("deploy/kubernetes/pgbouncer.ini", target_is("kubernetes", pgbouncer=True)),
    ("deploy/kubernetes/pgbouncer-deployment.yaml", target_is("kubernetes", pgbouncer=True)),
    ("deploy/kubernetes/pgbouncer-service.yaml", target_is("kubernetes", pgbouncer=True)),
    ("deploy/kubernetes/pgbouncer-userlist.txt.example", target_is("kubernetes", pgbouncer=True)),
    ("deploy/systemd/{slug}.service", target_is("systemd")),
    ("deploy/systemd/pgbouncer.ini", target_is("systemd", pgbouncer=True)),
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


def combination_id(answers: dict[str, Any]) -> str:
    return "-".join(key if value is True else str(value) for key, value in answers.items() if value is not False)


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


# GitHub Actions' own expressions, which the workflow is meant to keep.
ACTIONS_EXPRESSION = re.compile(rb"\$\{\{.*?\}\}")


def test_no_template_syntax_is_left_in_the_output(rendered: dict[str, Generated]) -> None:
    leftovers = [
        f"{path}: {marker!r}"
        for path, content in tree(project(rendered)).items()
        for marker in ("{{", "{%", "cookiecutter.")
        if marker.encode() in ACTIONS_EXPRESSION.sub(b"", content) and path != ".copier-answers.yml"
    ]
    assert leftovers == []


def test_the_example_files_passwords_are_the_ones_the_service_refuses(rendered: dict[str, Generated]) -> None:
    """Every URL in an example environment file carries a password settings.py refuses outside
    development, so a copied example never runs in production by accident."""
    root = project(rendered)
    settings = next((root / "src").glob("*/settings.py")).read_text()
    found = re.search(r"^EXAMPLE_PASSWORDS = frozenset\((\{.*?\})\)", settings, re.M)
    assert found, "settings.py has no EXAMPLE_PASSWORDS"
    refused = ast.literal_eval(found.group(1))
    examples = [path for path in root.rglob("*.env.example")] + [root / ".env.example"]
    passwords = {
        match.group(1)
        for path in examples
        if path.exists()
        for match in re.finditer(r"postgresql://[^:/@\s]+:([^@\s]+)@", path.read_text())
    }
    assert passwords, f"no example URL with a password in {examples}"
    assert passwords <= refused


# Files the Layout section need not name: the README itself, and what every repository has.
UNLISTED = {"README.md", ".copier-answers.yml", ".gitignore", "__init__.py", "__pycache__"}


def test_the_readme_layout_names_every_module_and_folder(rendered: dict[str, Generated]) -> None:
    root = project(rendered)
    readme = (root / "README.md").read_text()
    layout = readme[readme.index("\n## Layout\n") :].split("\n## ", 2)[1]
    package = next((root / "src").iterdir())
    entries = [
        *root.iterdir(),
        *package.iterdir(),
        *(package / "api").iterdir(),
        *(package / "capacity").iterdir(),
    ]
    unnamed = [
        str(entry.relative_to(root))
        for entry in entries
        if entry.name not in UNLISTED and not re.search(rf"(?<![\w.]){re.escape(entry.name)}\b", layout)
    ]
    assert unnamed == [], f"the README's Layout section does not name {unnamed}"


# What only this repository has: a generated project has none of it, so its files never point there.
TEMPLATE_REPOSITORY_MENTIONS = (
    "BENCHMARKS.md",
    "the template's",
    "of the template",
    "copier.yml",
    "hooks/",
    "cookiecutter.json",
)


def test_generated_files_speak_of_the_generated_project_only(rendered: dict[str, Generated]) -> None:
    mentions = [
        f"{path}: {mention!r}"
        for path, content in tree(project(rendered)).items()
        for mention in TEMPLATE_REPOSITORY_MENTIONS
        if mention.lower().encode() in content.lower() and path != ".copier-answers.yml"
    ]
    assert mentions == []


@cache
def repository_files() -> tuple[str, ...]:
    """The files git tracks in this repository outside the template tree."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return tuple(path for path in listed.split("\0") if path and not path.startswith("template/"))


def test_generated_files_name_no_file_of_this_repository(rendered: dict[str, Generated]) -> None:
    """A path of this repository that the project lacks (tests/generation.py, hooks/plan.jinja), or
    the name of such a file where the project has none by that name (BENCHMARKS.md, plan.jinja)."""
    files = tree(project(rendered))
    names = {Path(path).name for path in files}
    foreign = {path for path in repository_files() if path not in files} | {
        Path(path).name for path in repository_files() if "." in Path(path).name and Path(path).name not in names
    }
    mentioned = re.compile("|".join(rf"(?<![\w/.-]){re.escape(name)}(?![\w-])" for name in sorted(foreign)))
    mentions = [
        f"{path}: {found.group()!r}"
        for path, content in files.items()
        if path != ".copier-answers.yml"
        for found in mentioned.finditer(content.decode(errors="replace"))
    ]
    assert mentions == []


def test_the_copier_answers_file_stores_the_questions_only(rendered: dict[str, Generated]) -> None:
    stored = yaml.safe_load((project(rendered) / ".copier-answers.yml").read_text())
    answered = {key for key in stored if not key.startswith("_")}
    # A question asked only for some answers (`when:`), such as PgBouncer's numbers, is stored only then.
    asked = {name for name, spec in copier_questions().items() if is_asked(spec, stored)}
    assert answered == asked
    assert ("pgbouncer_pool_size" in answered) is stored["pgbouncer"]


def is_asked(spec: dict[str, Any], answers: dict[str, Any]) -> bool:
    when = spec.get("when", True)
    if isinstance(when, str):
        when = Environment(undefined=StrictUndefined).from_string(when).render(**answers).strip() == "True"
    return bool(when)


def test_the_chosen_answers_decide_which_files_exist(rendered: dict[str, Generated]) -> None:
    root = project(rendered)
    answers = rendered_answers(root)
    for template in ALWAYS_PRESENT:
        assert (root / template.format(slug=SLUG)).is_file(), template
    for template, keeps in CONDITIONAL_FILES:
        path = root / template.format(slug=SLUG)
        assert path.is_file() == keeps(answers), f"{template} with {answers}"
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


# Text answers that have broken one tool or the other: beyond the Basic Multilingual Plane (an
# escaped surrogate pair), combining marks, quotes, backslashes and escapes, YAML's own syntax,
# HTML's and TOML's special characters.
TRICKY_TEXTS = {
    "emoji": "Rocket 🚀 service",
    "combining-marks": "Cafe\u0301 na\u0308ive",
    "quotes": 'It\'s "quoted"',
    "backslashes": "back\\slash \\n \\u0041 \\",
    "yaml-syntax": "key: value # not a comment --- - [a] {b} &c *d !e |",
    "markup": "<b>&amp;</b> 100% $HOME `cmd`",
    "right-to-left": "שירות \u200f",
    "typography": "Caf\u00e9 \u2013 \u201cna\u00efve\u201d \u2019quotes\u2019\u2026",
}


@pytest.mark.parametrize("text", TRICKY_TEXTS.values(), ids=TRICKY_TEXTS.keys())
def test_text_answers_render_the_same_under_both_tools(text: str, tmp_path: Path) -> None:
    answers = {"project_name": text, "project_slug": "demo", "description": text}
    results = {tool: generate(tool, answers, tmp_path / tool) for tool in TOOLS}
    for result in results.values():
        assert result.ok, f"{result.tool} refused {text!r}: {result.error}"
    by_copier = tree(project(results, "copier"))
    by_cookiecutter = tree(project(results, "cookiecutter"))
    assert yaml.safe_load(by_copier.pop(".copier-answers.yml"))["description"] == text
    assert by_copier == by_cookiecutter
    assert text.encode() in by_copier["README.md"]
    assert tomllib.loads(by_copier["pyproject.toml"].decode())["project"]["description"] == text
    assert app_texts(by_copier["src/demo/main.py"].decode()) == {"title": text, "summary": text}
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        checked = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=project(results), capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def app_texts(main_py: str) -> dict[str, str]:
    """The texts the generated module gives FastAPI (its title and summary), as Python reads them."""
    calls = [node for node in ast.walk(ast.parse(main_py)) if isinstance(node, ast.Call)]
    app = next(call for call in calls if getattr(call.func, "id", None) == "FastAPI")
    return {
        keyword.arg: ast.literal_eval(keyword.value) for keyword in app.keywords if keyword.arg in {"title", "summary"}
    }
