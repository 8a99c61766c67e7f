"""README.md holds exactly the two commands a newcomer needs, and they work."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.answers import REPO, copier_questions
from tests.support.generation import template_source

README = (REPO / "README.md").read_text()


def command_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.+?)\n```", README, re.DOTALL)
    assert match, f"README.md has no ```sh block after <!-- {marker} -->"
    return match.group(1)


def test_the_readme_gives_exactly_two_commands() -> None:
    assert README.count("```sh") == 2
    assert "copier copy" in command_after("generate-command")
    assert "pytest" in command_after("test-command")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci, ".ci/run must read its test command from README.md"


def test_the_generate_command_generates_a_service(tmp_path: Path) -> None:
    clone = tmp_path / "headroom"
    shutil.copytree(template_source(), clone)
    result = subprocess.run(
        ["bash", "-c", command_after("generate-command")], cwd=clone, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "my-service" / "pyproject.toml").is_file()
    assert (tmp_path / "my-service" / ".copier-answers.yml").is_file()


def test_every_question_is_documented() -> None:
    undocumented = [name for name in copier_questions() if f"| `{name}` |" not in README]
    assert undocumented == []
