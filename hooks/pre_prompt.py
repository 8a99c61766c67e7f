"""cookiecutter, before it asks anything: turn this repository into its layout.

cookiecutter runs this hook in a temporary copy of the repository. The one
template tree, template/, becomes the `{{cookiecutter.project_slug}}` folder
cookiecutter looks for, and the file that only copier renders (its answers
file) is dropped. copier.yml stays: the other hooks read the rules from it.

Template files import the generation-time plan as "hooks/plan.jinja", a name
copier finds from the repository's root. cookiecutter's loader looks in the
template folder and in ../templates: a copy goes there, outside the folder it
renders, so no project gets it.
"""

import shutil
from pathlib import Path

TEMPLATE = Path("template")
COPIER_ONLY = [TEMPLATE / "{{ _copier_conf.answers_file }}"]
SHARED_TEMPLATES = [Path("hooks/plan.jinja")]

for path in COPIER_ONLY:
    path.unlink()
for path in SHARED_TEMPLATES:
    copy = Path("templates") / path
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, copy)
TEMPLATE.rename("{{cookiecutter.project_slug}}")
