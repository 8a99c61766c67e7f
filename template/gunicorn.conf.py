"""Gunicorn's configuration: `gunicorn -c gunicorn.conf.py` starts the service.

Every value comes from the service's Settings (the environment, with the defaults of
src/{{ cookiecutter.project_slug }}/defaults.py), so the tunables live in one place and a bad
value stops the master before any worker starts.
"""

from pathlib import Path

from gunicorn.arbiter import Arbiter

from {{ cookiecutter.project_slug }}.settings import Settings

_settings = Settings()

# Each worker imports the app and calls the factory itself, after the fork: no preload_app,
# so no connection pool or socket is ever shared between processes.
wsgi_app = "{{ cookiecutter.project_slug }}.main:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"
workers = _settings.web_concurrency
bind = f"0.0.0.0:{_settings.port}"

timeout = _settings.gunicorn_timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter

# Workers touch a heartbeat file every few seconds; on a disk-backed /tmp (as in many
# containers) that can stall under I/O pressure and get healthy workers killed.
if Path("/dev/shm").is_dir():
    worker_tmp_dir = "/dev/shm"

# Gunicorn 25.1+ opens a control socket under $HOME for `gunicornc`. The orchestrator manages
# this service with signals, and the container user's home is not writable: no socket.
control_socket_disable = True

loglevel = _settings.log_level
accesslog = "-"
errorlog = "-"


def when_ready(server: Arbiter) -> None:
    """Log the values in force once, so an operator can see what the environment resolved to."""
    s = _settings
    server.log.info(
        f"{wsgi_app} on {bind}: {workers} workers, timeout {timeout}s,"
        f" graceful_timeout {graceful_timeout}s, keepalive {keepalive}s,"
        f" max_requests {max_requests} (+0..{max_requests_jitter})"
    )
    server.log.info(
        f"database {s.safe_database_url}: pool {s.db_pool_size} + overflow {s.db_max_overflow}"
        f" per worker, pool timeout {s.db_pool_timeout:g}s; at most {s.max_connections_used}"
        f" connections of the {s.connections_available} available (max_connections"
        f" {s.db_max_connections} - reserved {s.db_reserved_connections})"
    )
