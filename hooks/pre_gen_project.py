"""cookiecutter, before it writes files: apply copier.yml's rules to the answers.

A refused answer prints copier's message and exits 1; cookiecutter then
removes the project folder, so nothing is left behind.
"""

import json
import sys
from pathlib import Path

REPO_DIR = Path({{ cookiecutter._repo_dir | tojson }})
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})

sys.path.insert(0, str(REPO_DIR / "hooks"))
from copier_rules import AnswerRefusedError, cast_answers, load_copier_config, validate  # noqa: E402

config = load_copier_config(REPO_DIR)
try:
    validate(config, cast_answers(config, ANSWERS))
except AnswerRefusedError as refusal:
    print(f"ERROR: {refusal}", file=sys.stderr)
    sys.exit(1)
