"""`copier update` from earlier versions of the template, as its real history made them.

tests/test_update.py updates between two commits it makes itself, so its earlier
template always asks every question of the later one. This module starts from the
versions users really generated: git names them. A starting point is

- each release named in CHANGELOG.md (its tag, or the commit its entry names); and
- each commit of this branch's first-parent history (main's, on main) in which
  copier.yml's questions changed (a question added, removed, or its type, default,
  choices or condition changed); one before the first release counts as the first
  release, the oldest version updates are promised from. (The commits before it are
  the template's first hour. A service from one of 602d052 to ed170f0 updates, but a
  router it included at the end of create_app meets the bench router the template put
  there in 148800b: a conflict, which copier marks inline.)

From each, a service is generated with copier, changed the way its users change
one (USER_EDITS), committed, and updated to this working tree (committed on top of
a clone of the history, since copier updates to commits). The update must succeed,
leave no conflict, keep every edit (and the file copier.yml's _skip_if_exists leaves to
the service byte for byte), give each question added since its default, keep the
answers given, record the new commit, leave every file the user did not touch as a
service generated now has it, and, for the oldest and newest starting points, pass the
service's own test suite against a real PostgreSQL. The starting points take the
VARIANTS in turn (driver and deployment target).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import copier
import pytest
import yaml

from hooks.copier_rules import excluded_paths, load_copier_config, questions
from tests.support.services import install, run, service_env

REPO = Path(__file__).resolve().parents[1]

# The specification ---------------------------------------------------------------------------

SLUG = "orders_service"
ANSWERS = {"project_name": "Orders Service", "project_slug": SLUG, "description": "Takes orders."}
# The starting points take these in turn, oldest first, so the variants and their
# deployment files (paths the path list excludes by answer) are updated too.
VARIANTS = (
    {"db_driver": "async", "deployment_target": "docker-compose"},
    {"db_driver": "sync", "deployment_target": "kubernetes"},
    {"db_driver": "async", "deployment_target": "systemd"},
)

# A question's fields whose change makes a commit a starting point (help texts do not).
QUESTION_FIELDS = ("type", "default", "choices", "when")
# At most this many starting points (the suite's time budget): the oldest, the newest and
# the releases always; the others evenly sampled.
MAX_STARTING_POINTS = 6
# CHANGELOG.md: "## [0.2.0] - 2026-11-22", then "Commit: `19f2fce`" in that entry.
RELEASE_HEADING = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\]", re.MULTILINE)
RELEASE_COMMIT = re.compile(r"^Commit: `(?P<commit>[0-9a-f]{7,40})`", re.MULTILINE)

CONFLICT_MARKERS = (b"<<<<<<<", b">>>>>>>")


@dataclass(frozen=True)
class Edit:
    """One change a user makes to a generated service.

    `at`: "new file" writes `text` as a new file; "end" appends it; "after" and "before"
    insert it next to the first line equal to `anchor`; "replace" puts it instead of that line.
    """

    what: str
    path: str
    text: str
    at: Literal["new file", "end", "after", "before", "replace"]
    anchor: str = ""

    @property
    def relative(self) -> str:
        return self.path.format(slug=SLUG)


ROUTER = '''\
"""Orders: the service's own endpoints, written after it was generated."""

from fastapi import APIRouter

router = APIRouter(prefix="/orders", tags=["orders"])


@router.get("/count")
async def count_orders() -> dict[str, int]:
    """How many orders there are (none yet)."""
    return {"orders": 0}
'''

MODEL = '''

class Order(Base):
    """An order: the service's own table, written after it was generated."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64))
'''

MIGRATION = '''\
"""Create the orders table.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )


def downgrade() -> None:
    op.drop_table("orders")
'''

USER_EDITS = (
    Edit("a new router", "src/{slug}/api/orders.py", ROUTER, "new file"),
    Edit(
        "the router imported by the app factory",
        "src/{slug}/main.py",
        "from .api import orders\n",
        "after",
        "from fastapi import FastAPI",
    ),
    Edit(
        "the router included by the app factory",
        "src/{slug}/main.py",
        "    app.include_router(orders.router)\n",
        "before",
        "    return app",
    ),
    Edit("a new model (models.py is the service's own: _skip_if_exists)", "src/{slug}/models.py", MODEL, "end"),
    Edit("the model's Alembic migration", "migrations/versions/0002_create_orders.py", MIGRATION, "new file"),
    Edit("a dependency", "pyproject.toml", '    "tenacity>=8",\n', "after", "dependencies = ["),
    Edit(
        "a setting",
        "src/{slug}/settings.py",
        "    orders_page_size: int = Field(default=50, ge=1)\n",
        "after",
        "    readiness_timeout: float = Field(default=2.0, gt=0)",
    ),
    Edit(
        "their own words in the README",
        "README.md",
        "Takes orders by phone and by post, since 1998.\n",
        "replace",
        "Takes orders.",
    ),
)
# The generated suite lists the service's whole surface (the methods served at each path, a
# bad value for each setting), so a service that adds a route and a setting declares them
# there. Where the starting point's suite has those tables, the user declares them before the
# update (and the update keeps them); where it has not, once the update has brought them.
SUITE_DECLARATIONS = (
    Edit(
        "the new route in the suite's table of served methods",
        "tests/test_openapi.py",
        '    "/orders/count": {"GET"},\n',
        "after",
        "ALLOWED = {",
    ),
    Edit(
        "the new setting in the suite's table of bad values",
        "tests/test_settings.py",
        '    ("ORDERS_PAGE_SIZE", "0", f"use {WHOLE} of at least 1"),\n',
        "after",
        "BAD_VALUES = [",
    ),
)
# A file the template renders once and leaves to the service (copier.yml's _skip_if_exists):
# after the update it is exactly as the user left it.
OWNED_FILE = f"src/{SLUG}/models.py"

# Git ------------------------------------------------------------------------------------------

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "headroom tests",
    "GIT_AUTHOR_EMAIL": "tests@headroom.invalid",
    "GIT_COMMITTER_NAME": "headroom tests",
    "GIT_COMMITTER_EMAIL": "tests@headroom.invalid",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **GIT_IDENTITY},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def commit_everything(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class HistoryUnavailableError(Exception):
    """The repository's history cannot be read: a shallow clone that could not be deepened."""


def ensure_full_history(repo: Path) -> None:
    if git(repo, "rev-parse", "--is-shallow-repository") != "true":
        return
    result = subprocess.run(["git", "fetch", "--quiet", "--unshallow"], cwd=repo, capture_output=True, text=True)
    # With no remote to fetch from, git fetch succeeds and deepens nothing: ask again.
    if result.returncode != 0 or git(repo, "rev-parse", "--is-shallow-repository") == "true":
        raise HistoryUnavailableError(
            f"{repo} is a shallow clone and `git fetch --unshallow` did not deepen it"
            f" ({result.stderr.strip() or 'no remote to fetch from'}): "
            "these tests update services generated from the template's earlier commits; "
            "clone with full history (actions/checkout: fetch-depth: 0)"
        )


# Starting points ------------------------------------------------------------------------------


class _IgnoreIncludes(yaml.SafeLoader):
    """copier.yml's questions, without following `!include` (the path list)."""


_IgnoreIncludes.add_constructor("!include", lambda loader, node: None)


def question_specs(commit: str) -> dict[str, tuple[Any, ...]]:
    """The questions of copier.yml at `commit`, each as the fields that matter to an update."""
    text = git(REPO, "show", f"{commit}:copier.yml")
    merged: dict[str, Any] = {}
    for document in yaml.load_all(text, _IgnoreIncludes):
        merged.update(document or {})
    return {
        name: tuple(repr(spec.get(field)) for field in QUESTION_FIELDS)
        for name, spec in merged.items()
        if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False  # not computed
    }


def release_points(changelog: str) -> dict[str, str]:
    """version -> commit of each release in CHANGELOG.md: its tag if it exists, else the commit named.

    The newest entry may have neither: it is the release being made, this working tree, which
    is what the services are updated to (README.md, "Releasing": the tag comes once the tests pass).
    """
    releases = {}
    headings = list(RELEASE_HEADING.finditer(changelog))
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        version = heading["version"]
        entry = changelog[heading.end() : following.start() if following else len(changelog)]
        named = RELEASE_COMMIT.search(entry)
        tagged = git(REPO, "rev-parse", "--verify", "--quiet", f"v{version}^{{commit}}", check=False)
        if not (named or tagged) and heading is headings[0]:
            continue
        assert named or tagged, f"CHANGELOG.md: release {version} names no commit (`Commit: <sha>`) and has no tag"
        commit = git(REPO, "rev-parse", "--verify", f"{named['commit']}^{{commit}}") if named else tagged
        assert not tagged or tagged == commit, f"CHANGELOG.md names {commit} for {version}, but v{version} is {tagged}"
        releases[version] = commit
    return releases


@dataclass(frozen=True)
class StartingPoint:
    commit: str
    why: str  # "release 0.2.0; questions pgbouncer, ... at 51f7631"
    role: str = ""  # "oldest", "newest" or ""
    variant: tuple[tuple[str, str], ...] = ()

    @property
    def answers(self) -> dict[str, str]:
        return {**ANSWERS, **dict(self.variant)}

    @property
    def id(self) -> str:
        label = self.role or (
            "release-" + self.why.split()[1].rstrip(";") if self.why.startswith("release") else "questions"
        )
        return "-".join([self.commit[:7], label, *(value for _, value in self.variant)])


def sample(points: list[StartingPoint], keep: set[str], limit: int) -> list[StartingPoint]:
    """At most `limit` points, oldest first: the first, the last and `keep`, then evenly spaced others."""
    if len(points) <= limit:
        return points
    chosen = {points[0].commit, points[-1].commit} | keep
    others = [point for point in points if point.commit not in chosen]
    room = max(limit - len(chosen), 0)
    step = len(others) / room if room else 0
    chosen |= {others[int(index * step)].commit for index in range(room)}
    return [point for point in points if point.commit in chosen]


@cache
def starting_points() -> tuple[StartingPoint, ...]:
    ensure_full_history(REPO)
    history = git(REPO, "log", "--first-parent", "--reverse", "--format=%H", "HEAD").split()
    position = {commit: index for index, commit in enumerate(history)}
    releases = release_points((REPO / "CHANGELOG.md").read_text())
    assert releases, "CHANGELOG.md names no release"
    for version, commit in releases.items():
        assert commit in position, f"release {version} ({commit[:7]}) is not in this branch's first-parent history"
    first_release = min(releases.values(), key=position.__getitem__)

    def supported(commit: str) -> str:
        return history[max(position[commit], position[first_release])]

    why: dict[str, list[str]] = {commit: [f"release {version}"] for version, commit in releases.items()}
    previous: dict[str, tuple[Any, ...]] = {}
    for commit in git(REPO, "log", "--first-parent", "--reverse", "--format=%H", "HEAD", "--", "copier.yml").split():
        current = question_specs(commit)
        changed = sorted(name for name in current.keys() | previous.keys() if current.get(name) != previous.get(name))
        previous = current
        if changed:
            why.setdefault(supported(commit), []).append(f"questions {', '.join(changed)} at {commit[:7]}")
    ordered = [StartingPoint(commit, "; ".join(why[commit])) for commit in sorted(why, key=position.__getitem__)]
    oldest, newest = ordered[0], ordered[-1]
    chosen = sample(ordered, set(releases.values()), MAX_STARTING_POINTS)
    return tuple(
        StartingPoint(
            point.commit,
            point.why,
            "oldest" if point == oldest else "newest" if point == newest else "",
            tuple(VARIANTS[index % len(VARIANTS)].items()),
        )
        for index, point in enumerate(chosen)
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "start" not in metafunc.fixturenames:
        return
    try:
        points: list[Any] = [pytest.param(point, id=point.id) for point in starting_points()]
    except HistoryUnavailableError as error:
        points = [pytest.param(error, id="history-unavailable")]
    metafunc.parametrize("start", points)


# The template as it is now, committed ---------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full clone of the history with this working tree committed on top (copier updates to commits)."""
    clone = tmp_path_factory.mktemp("template-history") / "headroom"
    git(REPO, "clone", "--quiet", "--no-checkout", str(REPO), str(clone))
    git(clone, "checkout", "--quiet", "--detach", git(REPO, "rev-parse", "HEAD"))
    listed = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for relative in filter(None, listed):
        source, target = REPO / relative, clone / relative
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():  # deleted in the working tree
            target.unlink()
    commit_everything(clone, "the working tree")
    return clone.resolve()


# Steps ----------------------------------------------------------------------------------------


def applies(edit: Edit, service: Path) -> bool:
    path = service / edit.relative
    if edit.at == "new file":
        return not path.exists()
    return path.exists() and (edit.at == "end" or edit.anchor in path.read_text().splitlines())


def apply(edit: Edit, service: Path) -> None:
    path = service / edit.relative
    if edit.at == "new file":
        assert not path.exists(), f"{edit.what}: {edit.relative} exists already"
        path.write_text(edit.text)
        return
    content = path.read_text()
    if edit.at == "end":
        path.write_text(content + edit.text)
        return
    lines = content.splitlines(keepends=True)
    index = next((i for i, line in enumerate(lines) if line.rstrip("\n") == edit.anchor), None)
    assert index is not None, f"{edit.what}: no line {edit.anchor!r} in {edit.relative}"
    replacement = {
        "after": [lines[index], edit.text],
        "before": [edit.text, lines[index]],
        "replace": [edit.text],
    }[edit.at]
    path.write_text("".join([*lines[:index], *replacement, *lines[index + 1 :]]))


def files_with_conflict_markers(service: Path) -> list[str]:
    return [
        str(path.relative_to(service))
        for path in service.rglob("*")
        if path.is_file()
        and ".git" not in path.relative_to(service).parts
        and any(marker in path.read_bytes() for marker in CONFLICT_MARKERS)
    ]


def tree(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def answers_of(service: Path) -> dict[str, Any]:
    return yaml.safe_load((service / ".copier-answers.yml").read_text())


def literal_defaults() -> dict[str, tuple[Any, bool]]:
    """Each question with a literal default: (the default, whether it is always asked)."""
    return {
        name: (spec["default"], "when" not in spec)
        for name, spec in questions(load_copier_config(REPO)).items()
        if "default" in spec and "{{" not in str(spec["default"])
    }


# The tests ------------------------------------------------------------------------------------

# copier renders the _exclude entries once more with the answers of the version a service was
# generated from (copier-org/copier#2482): they read answers through `a`, the answers over a
# table of defaults, never from `cookiecutter` directly.
DEFAULTS_TABLE = re.compile(r"dict\((\{.*?\}), \*\*cookiecutter\)", re.DOTALL)


def path_list() -> list[str]:
    return [str(entry) for entry in load_copier_config(REPO)["_exclude"]]


def answers_read_by_the_path_list() -> set[str]:
    return {name for entry in path_list() for name in re.findall(r"\ba\.(\w+)", entry)}


def test_the_path_list_reads_answers_only_through_its_table_of_defaults() -> None:
    defaults = {name: default for name, (default, _) in literal_defaults().items()}
    for entry in path_list():
        assert not re.search(r"cookiecutter\.\w", entry), f"reads an answer without a default: {entry!r}"
        read = set(re.findall(r"\ba\.(\w+)", entry))
        if not read:
            continue
        table = DEFAULTS_TABLE.search(entry)
        assert table, f"reads {sorted(read)} without a table of defaults: {entry!r}"
        fallbacks = json.loads(table.group(1))
        assert read <= fallbacks.keys(), f"no default for {sorted(read - fallbacks.keys())}"
        assert fallbacks == {name: defaults[name] for name in fallbacks}, "the table's defaults are copier.yml's"


@pytest.mark.parametrize("missing", sorted(answers_read_by_the_path_list()))
def test_an_answer_missing_from_an_older_version_counts_as_its_default(missing: str) -> None:
    config = load_copier_config(REPO)
    answers = {name: default for name, (default, _) in literal_defaults().items()}
    older = {name: value for name, value in answers.items() if name != missing}
    assert excluded_paths(config, older) == excluded_paths(config, answers)


@pytest.mark.boot
def test_a_service_generated_from_an_earlier_version_updates_and_keeps_its_edits(
    start: StartingPoint | HistoryUnavailableError, template: Path, tmp_path: Path, uv: str, postgres: Any
) -> None:
    if isinstance(start, HistoryUnavailableError):
        pytest.fail(str(start), pytrace=False)
    service = tmp_path / SLUG
    copier.run_copy(str(template), service, data=start.answers, defaults=True, vcs_ref=start.commit, quiet=True)
    git(service, "init", "-q", "-b", "main")
    commit_everything(service, f"generated from headroom {start.commit[:7]}")
    before = answers_of(service)
    declared_before = [edit for edit in SUITE_DECLARATIONS if applies(edit, service)]
    for edit in (*USER_EDITS, *declared_before):
        apply(edit, service)
    commit_everything(service, "the service's own changes")
    owned = (service / OWNED_FILE).read_bytes()

    copier.run_update(str(service), vcs_ref="HEAD", defaults=True, overwrite=True, unsafe=False, quiet=True)

    assert files_with_conflict_markers(service) == []
    assert sorted(str(path.relative_to(service)) for path in service.rglob("*.rej")) == []
    for edit in (*USER_EDITS, *declared_before):
        assert edit.text in (service / edit.relative).read_text(), f"lost in the update: {edit.what}"
    assert (service / OWNED_FILE).read_bytes() == owned, f"{OWNED_FILE} is the service's own, yet the update changed it"
    after = answers_of(service)
    recorded = git(template, "rev-parse", "--verify", f"{after['_commit']}^{{commit}}")
    assert recorded == git(template, "rev-parse", "HEAD"), "the answers file records the commit updated to"
    for name, (default, always_asked) in literal_defaults().items():
        if name not in before and (always_asked or name in after):
            assert after.get(name) == default, f"{name}, a question added since, takes its default"
    assert {name: after[name] for name in before if not name.startswith("_")} == {
        name: value for name, value in before.items() if not name.startswith("_")
    }, "the answers given at generation are kept"

    fresh = tmp_path / "fresh" / SLUG
    answered = {name: value for name, value in after.items() if not name.startswith("_")}
    copier.run_copy(str(template), fresh, data=answered, defaults=True, vcs_ref="HEAD", quiet=True)
    own = {edit.relative for edit in (*USER_EDITS, *declared_before) if edit.at == "new file"}
    assert tree(service) == tree(fresh) | own, "the files of a service generated now with these answers, and its own"
    edited = {edit.relative for edit in (*USER_EDITS, *declared_before)}
    stale = [path for path in tree(fresh) - edited if (service / path).read_bytes() != (fresh / path).read_bytes()]
    assert stale == [], "a file the user did not touch is as a service generated now has it"

    if start.role in ("oldest", "newest"):
        for edit in SUITE_DECLARATIONS:
            if edit not in declared_before:
                apply(edit, service)
        project = install(service, after["db_driver"], uv)
        database_url = postgres.create_database(f"history_{start.commit[:7]}")
        suite = [project.bin("pytest"), "-q", "-p", "no:cacheprovider"]
        run(suite, cwd=service, env=service_env(DATABASE_URL=database_url), timeout=600)
