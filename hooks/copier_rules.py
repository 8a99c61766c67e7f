"""Evaluate copier.yml's questions for cookiecutter.

copier.yml is the single source of truth for questions, types, choices and
validators. Copier applies them itself; cookiecutter's hooks call this module
to apply the very same rules to cookiecutter's answers, so both tools accept
and refuse the same answers with the same messages.

Only the standard library, PyYAML and Jinja2 are used: cookiecutter itself
depends on both, so the hooks run in whatever environment cookiecutter runs.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

# How copier turns an answer into its question's type.
_CASTS = {
    "str": str,
    "int": int,
    "float": float,
    "bool": lambda value: value if isinstance(value, bool) else str(value).lower() in {"1", "true", "y", "yes", "on"},
    "json": json.loads,
    "yaml": yaml.safe_load,
}


class AnswerRefusedError(ValueError):
    """An answer that copier.yml's rules refuse; the message names the field."""


def _include_loader(root: Path) -> type[yaml.SafeLoader]:
    """A YAML loader that understands copier's `!include` tag."""

    class Loader(yaml.SafeLoader):
        pass

    def include(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        pattern = str(loader.construct_scalar(node))  # type: ignore[arg-type]
        documents = [yaml.load(path.read_text(), Loader) for path in sorted(root.glob(pattern))]
        return documents[0] if len(documents) == 1 else documents

    Loader.add_constructor("!include", include)
    return Loader


def load_copier_config(repo_dir: Path) -> dict[str, Any]:
    """copier.yml as copier sees it: all YAML documents merged into one mapping."""
    loader = _include_loader(repo_dir)
    merged: dict[str, Any] = {}
    for document in yaml.load_all((repo_dir / "copier.yml").read_text(), loader):
        merged.update(document or {})
    return merged


def questions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The questions users answer: not settings (`_x`), not computed (`when: false`)."""
    return {
        name: spec
        for name, spec in config.items()
        if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
    }


# The repository's root, as copier's loader sees it: the rules `{% import "hooks/plan.jinja" %}`.
REPO_DIR = Path(__file__).resolve().parents[1]


@cache
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(REPO_DIR), undefined=StrictUndefined, keep_trailing_newline=True
    )


@cache
def _compiled(source: str) -> Template:
    return _environment().from_string(source)


def _choice_values(spec: dict[str, Any]) -> list[Any]:
    choices = spec.get("choices") or []
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def cast_answers(config: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Cast cookiecutter's answers (mostly strings) to copier's types, or refuse."""
    answers: dict[str, Any] = {}
    for name, spec in questions(config).items():
        type_name = spec.get("type", "str")
        value = raw[name]
        try:
            answers[name] = _CASTS[type_name](value)
        except (TypeError, ValueError) as error:
            raise AnswerRefusedError(f'{name}: "{value}" is not of type "{type_name}"') from error
        allowed = _choice_values(spec)
        if allowed and answers[name] not in allowed:
            accepted = ", ".join(str(choice) for choice in allowed)
            raise AnswerRefusedError(f'{name}: "{value}" is not one of the choices ({accepted})')
    return answers


def validate(config: dict[str, Any], answers: dict[str, Any]) -> None:
    """Render each question's validator in order, as copier does; refuse on the first message."""
    for spec in questions(config).values():
        template = spec.get("validator")
        if not template:
            continue
        message = _compiled(template).render(**answers).strip()
        if message:
            raise AnswerRefusedError(message)


def excluded_paths(config: dict[str, Any], context: dict[str, Any]) -> list[str]:
    """The patterns the `_exclude` entries render to for these answers: one a line, as copier reads them."""
    rendered = (_compiled(entry).render(cookiecutter=context) for entry in config.get("_exclude", []))
    return [line.strip() for text in rendered for line in text.splitlines() if line.strip()]


def render_message(config: dict[str, Any], context: dict[str, Any]) -> str:
    """copier's after-copy message, rendered for cookiecutter's answers."""
    return _compiled(config.get("_message_after_copy", "")).render(cookiecutter=context).strip()
