"""`python -m {{ cookiecutter.project_slug }}`: start the service under gunicorn.

This is the way to start the service (the Dockerfile and the systemd unit do). gunicorn reads
WEB_CONCURRENCY as a number when it is imported, before its configuration file, and a value
it cannot read ends it with a traceback that names no variable; `WEB_CONCURRENCY=auto` it
cannot read at all. So the settings are checked here first: a bad one ends this command with
one line naming it (exit 2), and WEB_CONCURRENCY is passed on as the number it resolves to
(auto: the CPUs the container's quota allows, see cpus.py). Then this process replaces itself
with gunicorn (exec: same process, so signals reach gunicorn directly). Other arguments are
passed on to gunicorn.
"""

import os
import sys

from .settings import Settings, settings_or_exit


def main() -> None:
    settings = settings_or_exit(Settings)
    if "WEB_CONCURRENCY" in os.environ:
        os.environ["WEB_CONCURRENCY"] = str(settings.web_concurrency)
    # The gunicorn of this same environment, whatever PATH says.
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *sys.argv[1:]]
    os.execv(sys.executable, gunicorn)


if __name__ == "__main__":
    main()
