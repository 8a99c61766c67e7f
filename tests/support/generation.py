"""Generate a service from this repository with either tool, the same way in every test."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import copier
from cookiecutter.main import cookiecutter

from tests.support.answers import REPO, TOOLS, default_answers


@cache
def template_source() -> Path:
    """This repository's files as a user's clone would have them, including uncommitted changes.

    cookiecutter copies the whole template folder before its pre_prompt hook,
    virtual environments and caches included; a snapshot of the files git
    tracks (or would track) keeps that copy small, and tests what users get.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    snapshot = Path(_SNAPSHOTS.name) / "headroom"
    for relative in filter(None, listed.split("\0")):
        if (REPO / relative).is_file():
            (snapshot / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, snapshot / relative)
    return snapshot


_SNAPSHOTS = tempfile.TemporaryDirectory(prefix="headroom-template-")


def template_module(relative: str) -> ModuleType:
    """Import a plain-Python file or package of the template tree (without Jinja) as it will be generated.

    Modules such as the capacity plan and the throwaway PostgreSQL are tested
    and used here without generating a project: one source for both. A package
    is imported with the modules its __init__.py imports, relative imports and all.
    """
    path = REPO / "template" / relative
    name = f"template_{path.stem}"
    if name not in sys.modules:
        package = [str(path)] if path.is_dir() else None
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py" if package else path, submodule_search_locations=package
        )
        assert spec, path
        assert spec.loader, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


def capacity_package() -> ModuleType:
    """The service's capacity package (src/<slug>/capacity/), as generated."""
    return template_module("src/{{ cookiecutter.project_slug }}/capacity")


# The capacity plan's inputs that are answers at generation, by the same names (but db_driver).
PLAN_ANSWERS = (
    "replicas",
    "max_surge",
    "workers",
    "pool_size",
    "max_overflow",
    "db_max_connections",
    "db_reserved_connections",
    "pgbouncer",
    "pgbouncer_max_client_conn",
    "pgbouncer_pool_size",
)


def plan_inputs(answers: Mapping[str, Any]) -> Any:
    """The capacity plan's inputs of a service generated with these answers (the others at their
    defaults) and run with no environment: what is not an answer at the settings' defaults."""
    capacity = capacity_package()
    merged = {**default_answers(), **answers}
    return capacity.PlanInputs(
        driver=merged["db_driver"],
        **{name: merged[name] for name in PLAN_ANSWERS},
        queue_budget_ms=capacity.DEFAULT_QUEUE_BUDGET_MS,
        admission_queue=None,
        spare_threads=capacity.DEFAULT_SPARE_THREADS,
    )


@dataclass
class Generated:
    """The outcome of one generation: a project folder, or the reason it was refused."""

    tool: str
    project: Path | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


@contextmanager
def _private_tempdir(scratch: Path) -> Iterator[None]:
    """cookiecutter leaves its repository copies and rendered hooks in the temp dir: keep them in ours."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def generate(
    tool: str, answers: Mapping[str, Any], workdir: Path, *, src: Path | None = None, vcs_ref: str | None = None
) -> Generated:
    """Render the template with `tool` into `workdir`; never raises on refused answers.

    By default the template is the working tree's snapshot; give `src` (a git
    repository) and `vcs_ref` to render a committed state, as `copier update` needs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    src = src or template_source()
    if tool == "copier":
        destination = workdir / "project"
        try:
            copier.run_copy(
                str(src), destination, data=dict(answers), defaults=True, vcs_ref=vcs_ref, quiet=True, unsafe=False
            )
        except Exception as error:  # copier raises ValueError subclasses for refused answers
            return Generated(tool, None, str(error))
        return Generated(tool, destination, None)
    if tool == "cookiecutter":
        scratch = workdir / "tmp"
        scratch.mkdir(exist_ok=True)
        output = workdir / "output"
        context = {key: str(value) for key, value in answers.items()}
        with _private_tempdir(scratch):
            try:
                project = cookiecutter(str(src), no_input=True, extra_context=context, output_dir=str(output))
            except Exception as error:  # FailedHookException, or ValueError for an unknown choice
                return Generated(tool, None, f"{error}\n{getattr(error, '__cause__', '') or ''}")
        return Generated(tool, Path(project), None)
    raise ValueError(f"unknown tool {tool!r}; expected one of {TOOLS}")


def tree(project: Path) -> dict[str, bytes]:
    """Every file of a generated project by relative path, with its bytes."""
    return {str(path.relative_to(project)): path.read_bytes() for path in sorted(project.rglob("*")) if path.is_file()}
