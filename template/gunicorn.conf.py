"""Gunicorn's configuration: `gunicorn -c gunicorn.conf.py` starts the service.

Every value comes from the service's Settings (the environment, with the defaults of
src/{{ cookiecutter.project_slug }}/defaults.py), so the tunables live in one place and a bad
value stops the master before any worker starts.
"""

import math
import os
from pathlib import Path

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from {{ cookiecutter.project_slug }} import metrics_dir
from {{ cookiecutter.project_slug }}.capacity import rows
from {{ cookiecutter.project_slug }}.logs import logging_config
from {{ cookiecutter.project_slug }}.settings import Settings, plan_or_exit, settings_or_exit
from {{ cookiecutter.project_slug }}.worker import handover

# A bad setting stops gunicorn here (exit 2, one line naming the variable), and so does a plan
# that does not fit (exit 1, with the numbers), before any worker starts or connects. Every
# worker checks the plan again as it starts (lifespan.py).
_settings = settings_or_exit(Settings)
plan_or_exit(_settings)

# Before any worker exists (and so before any imports prometheus_client): the folder where every
# worker writes its metrics, so that /metrics reports the whole instance (see metrics_dir.py).
# Started without this file, set PROMETHEUS_MULTIPROC_DIR to an empty folder yourself.
_metrics_folder = metrics_dir.prepare()

# Each worker imports the app and calls the factory itself, after the fork: no preload_app,
# so no connection pool or socket is ever shared between processes.
wsgi_app = "{{ cookiecutter.project_slug }}.main:create_app()"
# uvicorn-worker's UvicornWorker, with a shutdown that answers every request a client has sent
# and recycling that starts the replacement first (see worker.py).
worker_class = "{{ cookiecutter.project_slug }}.worker.ServiceWorker"
workers = _settings.web_concurrency
bind = f"0.0.0.0:{_settings.port}"

timeout = _settings.gunicorn_timeout
# gunicorn's clock starts at SIGTERM: the drain comes first, and then GRACEFUL_TIMEOUT is still
# whole for the requests in flight.
graceful_timeout = _settings.graceful_timeout + math.ceil(_settings.drain_seconds)
keepalive = _settings.keepalive
max_requests = _settings.max_requests
max_requests_jitter = _settings.recycle_jitter

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
# Every process's lines in one format, JSON by default (LOG_FORMAT; see logs.py): gunicorn's,
# uvicorn's and the service's, with the request ID of the request they were written for.
logconfig_dict = logging_config(_settings.log_format, _settings.log_level)


def on_starting(server: Arbiter) -> None:
    """Before the first fork: the folder where workers say they are ready or retiring."""
    handover.open(server.cfg.worker_tmp_dir)


def child_exit(server: Arbiter, worker: Worker) -> None:
    """A worker that retired (MAX_REQUESTS) gives back the extra slot its replacement took; a
    worker that ended, however, leaves the live gauges (its counters stay counted)."""
    handover.worker_exited(server, worker.pid)
    metrics_dir.worker_died(worker.pid)


def on_exit(server: Arbiter) -> None:
    handover.close()
    metrics_dir.remove(_metrics_folder)


def when_ready(server: Arbiter) -> None:
    """Log the values in force once, so an operator can see what the environment resolved to."""
    s = _settings
    server.log.info(
        f"{wsgi_app} on {bind}: {workers} workers, timeout {timeout}s,"
        f" graceful_timeout {graceful_timeout}s, keepalive {keepalive}s,"
        f" max_requests {max_requests} (+0..{max_requests_jitter}),"
        f" drain {_settings.drain_seconds:g}s"
    )
    server.log.info(
        f"workers: {workers} (WEB_CONCURRENCY={os.environ.get('WEB_CONCURRENCY', 'unset')});"
        f" database {s.safe_database_url}, pool timeout {s.db_pool_timeout:g}s"
    )
    for quantity, value, derivation in rows(s.capacity_plan()):
        server.log.info(f"capacity plan: {quantity} = {value} ({derivation})")
