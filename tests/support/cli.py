"""The tools' command lines, run as a user types them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.generation import template_source


def run_cli(
    tool: str, answers: dict[str, object], workdir: Path, *, exist_ok: bool = False
) -> subprocess.CompletedProcess[str]:
    """`copier copy --defaults` or `cookiecutter --no-input` with `answers`, in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=exist_ok)
    if tool == "copier":
        data = [arg for key, value in answers.items() for arg in ("--data", f"{key}={value}")]
        command = ["-m", "copier", "copy", "--defaults", *data, str(template_source()), "project"]
    else:
        extra = [f"{key}={value}" for key, value in answers.items()]
        command = ["-m", "cookiecutter", "--no-input", "--output-dir", "output", str(template_source()), *extra]
    # cookiecutter leaves its temporary repository copy and rendered hooks in TMPDIR: keep them in the test's folder.
    environment = {**os.environ, "TMPDIR": str(workdir)}
    return subprocess.run(
        [sys.executable, *command], cwd=workdir, env=environment, capture_output=True, text=True, check=False
    )
