"""cookiecutter, after it wrote files: drop the paths these answers exclude.

The list is hooks/conditional_paths.yml, the same one copier applies through
`_exclude`, so both tools produce the same tree.
"""

import json
import shutil
import sys
from pathlib import Path

REPO_DIR = Path({{ cookiecutter._repo_dir | tojson }})
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})

sys.path.insert(0, str(REPO_DIR / "hooks"))
from copier_rules import excluded_paths, load_copier_config, render_message  # noqa: E402

project = Path.cwd()
for pattern in excluded_paths(load_copier_config(REPO_DIR), ANSWERS):
    # As in .gitignore: a pattern with no slash matches at any depth, one with a slash is
    # relative to the project's root (a leading slash only says so).
    for path in list(project.glob(pattern.lstrip("/")) if "/" in pattern else project.rglob(pattern)):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
# A folder whose every entry was excluded would be left empty; copier never creates it.
for folder in sorted((p for p in project.rglob("*") if p.is_dir()), reverse=True):
    if not any(folder.iterdir()):
        folder.rmdir()

# The plan summary copier shows after generation (copier.yml's _message_after_copy).
print(render_message(load_copier_config(REPO_DIR), ANSWERS))
