"""cookiecutter.json mirrors copier.yml, which holds the questions and rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hooks.copier_rules import load_copier_config
from tests.support.answers import REPO, copier_questions

COOKIECUTTER = json.loads((REPO / "cookiecutter.json").read_text())
QUESTIONS = copier_questions()


def copier_choices(spec: dict[str, Any]) -> list[Any]:
    choices = spec["choices"]
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def test_both_tools_ask_the_same_questions_in_the_same_order() -> None:
    asked_by_cookiecutter = [key for key in COOKIECUTTER if not key.startswith("_")]
    assert asked_by_cookiecutter == list(QUESTIONS)


@pytest.mark.parametrize("name", QUESTIONS)
def test_defaults_agree(name: str) -> None:
    spec, mirrored = QUESTIONS[name], COOKIECUTTER[name]
    if "choices" in spec:
        # cookiecutter's default is the first choice; the set of choices is the same.
        assert mirrored[0] == spec["default"]
        assert sorted(mirrored) == sorted(copier_choices(spec))
    else:
        # A computed default is the same expression, cookiecutter naming answers through `cookiecutter.`.
        assert str(mirrored).replace("cookiecutter.", "") == str(spec["default"])


@pytest.mark.parametrize("name", QUESTIONS)
def test_every_question_explains_itself(name: str) -> None:
    assert len(QUESTIONS[name].get("help", "")) > 40, f"{name} needs a help text that explains the trade-off"


def test_the_cookiecutter_mapping_copier_computes_carries_every_answer() -> None:
    computed = load_copier_config(REPO)["cookiecutter"]
    assert computed["when"] is False, "computed, never asked nor stored"
    for name in QUESTIONS:
        assert f'"{name}": {name},' in computed["default"], name


def test_copier_needs_no_trust() -> None:
    config = load_copier_config(REPO)
    assert "_tasks" not in config
    assert "_jinja_extensions" not in config
    assert "_migrations" not in config
