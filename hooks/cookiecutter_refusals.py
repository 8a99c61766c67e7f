"""cookiecutter, while it works out the answers: refuse bad ones before it makes any folder.

cookiecutter creates the project folder, named by the answers, before its
pre_gen_project hook runs, and stops with its own words when that folder
already exists: an empty project_name or a project_slug of "." would be
reported as '"." directory already exists'. This Jinja extension is loaded by
cookiecutter.json's `_extensions`; the private variable rendered after every
answer applies copier.yml's rules there, in cookiecutter's own process, so a
refused answer is reported in copier's words before anything is written, and
cookiecutter's command line prints it as one line and exits 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cookiecutter.exceptions import FailedHookException
from jinja2 import Environment
from jinja2.ext import Extension

from .copier_rules import AnswerRefusedError, cast_answers, load_copier_config, validate

REPO_DIR = Path(__file__).resolve().parents[1]


class AnswerRefused(FailedHookException):
    """A refused answer; cookiecutter's command line prints the message of this class and exits 1."""


def refuse_bad_answers(answers: Mapping[str, Any]) -> str:
    """Nothing when copier.yml's rules accept these answers; else stop cookiecutter with their message."""
    config = load_copier_config(REPO_DIR)
    try:
        validate(config, cast_answers(config, dict(answers)))
    except AnswerRefusedError as refusal:
        raise AnswerRefused(f"ERROR: {refusal}") from None
    return ""


class RefuseBadAnswers(Extension):
    """Adds the `refuse_bad_answers` filter to cookiecutter's Jinja environment."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["refuse_bad_answers"] = refuse_bad_answers
