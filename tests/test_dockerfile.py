"""The Dockerfile, which every target renders: hadolint reports nothing, and no secret is baked in."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.answers import TARGETS
from tests.support.deploy import Case, cases, run, silent_success, tool


@pytest.mark.parametrize("case", cases(*TARGETS))
def test_hadolint_reports_nothing_on_the_dockerfile(case: Case, render: Any) -> None:
    project = render(case)
    silent_success(run([tool("hadolint"), "--no-color", "Dockerfile"], cwd=project.path))


@pytest.mark.parametrize("case", cases(*TARGETS))
def test_the_dockerfile_bakes_in_no_secret(case: Case, render: Any) -> None:
    dockerfile = (render(case).path / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENV|ARG)\b.*(DATABASE_URL|PASSWORD|SECRET|TOKEN)", dockerfile, re.M | re.I)
    rules = [line for line in (render(case).path / ".dockerignore").read_text().splitlines() if line[:1] not in "#"]
    assert rules[0] == "*", ".dockerignore sends nothing to the build but what it names"
    assert not [rule for rule in rules if rule.startswith("!") and ".env" in rule], ".env must never be sent"
