"""The questions and the answer matrix, read from copier.yml: the one source of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("copier", "cookiecutter")


def copier_questions() -> dict[str, dict[str, Any]]:
    """copier.yml's questions (what users answer), in order."""
    from hooks.copier_rules import load_copier_config, questions

    return questions(load_copier_config(REPO))


def choices(question: str) -> tuple[str, ...]:
    """The values a choice question accepts, in copier.yml's order."""
    listed = copier_questions()[question]["choices"]
    return tuple(listed.values() if isinstance(listed, dict) else listed)


def default_answers() -> dict[str, Any]:
    """The default answer to every question that has a literal default."""
    return {
        name: spec["default"]
        for name, spec in copier_questions().items()
        if "default" in spec and "{{" not in str(spec["default"])
    }


DRIVERS = choices("db_driver")  # ("async", "sync")
TARGETS = choices("deployment_target")  # ("docker-compose", "kubernetes", "systemd")
