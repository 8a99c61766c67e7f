"""CPU accounting from /proc: what the server, PostgreSQL and everything else spent."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """CPU seconds of one process (and of its children that have exited, if asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + ((cutime + cstime) if with_reaped_children else 0)) / TICKS


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its children, living and reaped."""
    return process_seconds(pid, with_reaped_children=True) + sum(process_seconds(child) for child in children(pid))


def busy_seconds() -> dict[str, float]:
    """Per-CPU busy seconds since boot (everything but idle and iowait), from /proc/stat."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(value) for value in values]
            busy[name] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS
    return busy


@dataclass
class Usage:
    """CPU use over one measurement."""

    seconds: float
    server: float  # CPU seconds of the gunicorn master and workers
    postgres: float  # of the PostgreSQL cluster
    load: float  # of the load generator (wrk, or this process)
    cores: dict[str, float]  # busy fraction of each CPU, whoever used it
    connections: int = 0  # new connections the database accepted

    @property
    def others(self) -> float:
        """CPU seconds used by processes that are none of the above (other work on the host)."""
        return max(0.0, sum(self.cores.values()) * self.seconds - self.server - self.postgres - self.load)


class Meter:
    """Measures CPU use between start() and stop()."""

    def __init__(self, server_pid: int, postgres_pid: int, sessions: Callable[[], int] | None = None) -> None:
        self.server_pid = server_pid
        self.postgres_pid = postgres_pid
        self.sessions = sessions or (lambda: 0)  # how many connections the database has accepted

    def _sample(self) -> tuple[float, float, float, float, dict[str, float]]:
        times = os.times()
        own = times.user + times.system + times.children_user + times.children_system
        return (
            times.elapsed,
            tree_seconds(self.server_pid),
            tree_seconds(self.postgres_pid),
            own,
            busy_seconds(),
        )

    def start(self) -> None:
        self._sessions = self.sessions()
        self._start = self._sample()

    def stop(self) -> Usage:
        end = self._sample()
        connections = self.sessions() - self._sessions
        elapsed = end[0] - self._start[0]
        cores = {cpu: (end[4][cpu] - self._start[4].get(cpu, 0)) / elapsed for cpu in end[4]}
        return Usage(
            seconds=elapsed,
            server=end[1] - self._start[1],
            postgres=end[2] - self._start[2],
            load=end[3] - self._start[3],
            cores=cores,
            connections=connections,
        )
