"""The folder where every worker's metrics live, so that /metrics answers for the instance.

prometheus_client's multiprocess mode: each worker writes its samples to memory-mapped files
in PROMETHEUS_MULTIPROC_DIR, and whichever worker a scrape reaches reads them all. The
variable must be set, and the folder empty, before any process imports prometheus_client (it
picks how to store values at import). gunicorn.conf.py therefore calls `prepare()` in the
master, before it forks: `python -m {{ cookiecutter.project_slug }}` and `gunicorn -c
gunicorn.conf.py` both get it. Started any other way (uvicorn, tests), the variable is unset
and metrics.py uses prometheus_client's default registry, for that one process.

This module imports nothing of prometheus_client until a worker has died (`worker_died`).
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Set by prepare(), to the master's pid: gunicorn runs its configuration again on SIGHUP, and
# the live workers' files must survive that.
PREPARED_BY = "{{ cookiecutter.project_slug|upper }}_METRICS_PREPARED_BY"


def prepare() -> Path:
    """Create the folder (PROMETHEUS_MULTIPROC_DIR, else a new one in /dev/shm or the temporary
    folder), emptied of a previous run's files, and export its path to the workers."""
    if os.environ.get(PREPARED_BY) == str(os.getpid()):
        return Path(os.environ[VARIABLE])
    if "prometheus_client" in sys.modules:
        raise RuntimeError(f"prometheus_client was imported before {VARIABLE} was prepared")
    given = os.environ.get(VARIABLE)
    if given:
        folder = Path(given)
        shutil.rmtree(folder, ignore_errors=True)  # a previous run's counts are not this run's
        folder.mkdir(parents=True, exist_ok=True)
    else:
        shm = Path("/dev/shm")
        parent = str(shm) if shm.is_dir() else None  # memory, not disk: scrapes read every file
        folder = Path(tempfile.mkdtemp(prefix="{{ cookiecutter.project_slug }}-metrics-", dir=parent))
    os.environ[VARIABLE] = str(folder)
    os.environ[PREPARED_BY] = str(os.getpid())
    return folder


def worker_died(pid: int) -> None:
    """Drop a dead worker's live gauges (in flight, pool use); its counters stay counted."""
    if os.environ.get(VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove(folder: Path) -> None:
    """At the master's exit: the folder, if prepare() made it up (not one the operator named)."""
    if folder.name.startswith("{{ cookiecutter.project_slug }}-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)
