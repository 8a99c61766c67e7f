"""`python -m {{ cookiecutter.project_slug }}`: start the service under gunicorn.

gunicorn reads WEB_CONCURRENCY as a number when it is imported, before its configuration
file, so `WEB_CONCURRENCY=auto` must become a number first: this resolves it to the CPUs the
container's quota allows (see cpus.py) and then replaces itself with gunicorn (exec: same
process, so signals reach gunicorn directly). Other arguments are passed on to gunicorn.
"""

import os
import sys

from .cpus import available_cpus


def main() -> None:
    if os.environ.get("WEB_CONCURRENCY", "").strip().lower() == "auto":
        os.environ["WEB_CONCURRENCY"] = str(available_cpus())
    # The gunicorn of this same environment, whatever PATH says.
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *sys.argv[1:]]
    os.execv(sys.executable, gunicorn)


if __name__ == "__main__":
    main()
