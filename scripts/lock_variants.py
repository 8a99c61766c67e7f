"""`uv run python scripts/lock_variants.py [--upgrade]`: refresh the generated projects' uv.lock.

Each db_driver has its own dependencies, so each variant ships its own lock file, a whole-file
variant under template/ (`{% if cookiecutter.db_driver == "..." %}uv.lock{% endif %}`). uv can
only lock a real project, so this renders each variant with the default answers, puts the
current lock beside it (so that, without --upgrade, uv keeps every pin it can), runs `uv lock`,
and writes the result back with the project's own name turned into the template expression it
was rendered from. tests/test_locks.py fails while a lock is stale.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import copier

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hooks.copier_rules import load_copier_config, questions  # noqa: E402  (the repository's own loader)

DEFAULT_SLUG = "my_service"  # the default answers' project_slug
NAME_IN_LOCK = 'name = "{}"'  # how uv.lock names the project itself (a normalised name)
SLUG_EXPRESSION = "{{ cookiecutter.project_slug|replace('_', '-') }}"


def lock_path(driver: str) -> Path:
    return REPO / "template" / f'{{% if cookiecutter.db_driver == "{driver}" %}}uv.lock{{% endif %}}'


def drivers() -> list[str]:
    return list(questions(load_copier_config(REPO))["db_driver"]["choices"])


def lock(driver: str, upgrade: bool, scratch: Path) -> str:
    project = scratch / driver
    copier.run_copy(str(REPO), project, data={"db_driver": driver}, defaults=True, quiet=True, unsafe=False)
    normalised = DEFAULT_SLUG.replace("_", "-")
    if lock_path(driver).exists():
        current = lock_path(driver).read_text().replace(SLUG_EXPRESSION, normalised)
        (project / "uv.lock").write_text(current)
    command = ["uv", "lock", "--quiet", *(["--upgrade"] if upgrade else [])]
    subprocess.run(command, cwd=project, check=True)
    locked = (project / "uv.lock").read_text()
    own_name = NAME_IN_LOCK.format(normalised)
    if locked.count(own_name) != 1:
        raise SystemExit(f"{driver}: expected the project's own name once in uv.lock, as {own_name}")
    if any(marker in locked for marker in ("{{", "{%", "{#")):
        raise SystemExit(f"{driver}: uv.lock holds Jinja syntax, which rendering would change")
    return locked.replace(own_name, NAME_IN_LOCK.format(SLUG_EXPRESSION))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="take the newest versions pyproject.toml allows")
    args = parser.parse_args()
    if shutil.which("uv") is None:
        raise SystemExit("uv is missing: pip install uv")
    with tempfile.TemporaryDirectory(prefix="headroom-lock-") as scratch:
        for driver in drivers():
            lock_path(driver).write_text(lock(driver, args.upgrade, Path(scratch)))
            print(f"{driver}: {lock_path(driver).relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
