"""cookiecutter, before it asks anything: turn this repository into its layout.

cookiecutter runs this hook in a temporary copy of the repository. The one
template tree, template/, becomes the `{{cookiecutter.project_slug}}` folder
cookiecutter looks for, and the file that only copier renders (its answers
file) is dropped. copier.yml stays: the other hooks read the rules from it.
"""

from pathlib import Path

TEMPLATE = Path("template")
COPIER_ONLY = [TEMPLATE / "{{ _copier_conf.answers_file }}"]

for path in COPIER_ONLY:
    path.unlink()
TEMPLATE.rename("{{cookiecutter.project_slug}}")
