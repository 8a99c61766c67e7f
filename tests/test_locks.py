"""Each variant's uv.lock matches its pyproject.toml, whatever the project's name.

The lock files are whole-file variants under template/, refreshed by
`uv run python scripts/lock_variants.py`; the image installs from them (`uv sync --locked`).
A pyproject.toml changed without refreshing its lock fails here, not in a user's first build.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.answers import DRIVERS
from tests.support.generation import generate

# A slug other than the default's: the lock names the project as the answers do.
ANSWERS = {"project_name": "Locked Check", "project_slug": "locked_check"}


@pytest.mark.parametrize("tool", ["copier", "cookiecutter"])
@pytest.mark.parametrize("driver", DRIVERS, ids=lambda driver: f"db_driver={driver}")
def test_the_lock_is_current_for_the_generated_project(driver: str, tool: str, tmp_path: Path, uv: str) -> None:
    generated = generate(tool, {**ANSWERS, "db_driver": driver}, tmp_path)
    assert generated.project is not None, generated.error
    lock = tomllib.loads((generated.project / "uv.lock").read_text())
    own = [package for package in lock["package"] if package.get("source") == {"editable": "."}]
    assert [package["name"] for package in own] == ["locked-check"]
    result = subprocess.run(
        [uv, "lock", "--check"], cwd=generated.project, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"uv.lock is stale: run `uv run python scripts/lock_variants.py`\n{result.stderr}"


def test_each_lock_holds_only_its_own_drivers_packages(tmp_path: Path) -> None:
    names = {}
    for driver in DRIVERS:
        generated = generate("copier", {"db_driver": driver}, tmp_path / driver)
        assert generated.project is not None, generated.error
        names[driver] = {
            package["name"] for package in tomllib.loads((generated.project / "uv.lock").read_text())["package"]
        }
    assert "asyncpg" in names["async"] - names["sync"]
    assert "psycopg" in names["sync"] - names["async"]
