"""cookiecutter, before it writes files: apply copier.yml's rules to the answers as typed.

cookiecutter.json's private `__answers_accepted` already applied them to the
answers cookiecutter worked out, before it made the project folder. But
cookiecutter renders an answer given on its command line as Jinja ("{{ 7*7 }}"
becomes "49"), which copier takes as typed; the rules refuse such text, so
they are applied here once more, to what was typed. A refused answer prints
copier's message and exits 1; cookiecutter then removes the project folder.
"""

import json
import sys
from pathlib import Path

REPO_DIR = Path({{ cookiecutter._repo_dir | tojson }})
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
# The answers before cookiecutter rendered them: its defaults, and what the user gave on the command line.
UNRENDERED = json.loads({{ _cookiecutter | tojson | tojson }})

sys.path.insert(0, str(REPO_DIR / "hooks"))
from copier_rules import AnswerRefusedError, cast_answers, load_copier_config, validate  # noqa: E402

config = load_copier_config(REPO_DIR)
defaults = json.loads((REPO_DIR / "cookiecutter.json").read_text())
typed = {
    name: value for name, value in UNRENDERED.items() if isinstance(value, str) and value != defaults.get(name)
}
try:
    validate(config, cast_answers(config, {**ANSWERS, **typed}))
except AnswerRefusedError as refusal:
    print(f"ERROR: {refusal}", file=sys.stderr)
    sys.exit(1)
