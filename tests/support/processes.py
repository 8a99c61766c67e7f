"""Processes the tests and benchmarks start: a free port, a start, a wait until ready, a stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


class NotReadyError(RuntimeError):
    """A process exited, or did not become ready in time; the message ends with its output."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_200(url: str, timeout: float = 1) -> bool:
    """Whether a GET of `url` answers 200 now; False while nothing accepts the connection."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Ask `condition` every `interval` seconds until it holds (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_until_ready(
    process: subprocess.Popen[Any],
    ready: Callable[[], bool],
    timeout: float,
    *,
    name: str,
    output: Callable[[], str],
    interval: float = 0.1,
) -> None:
    """Until `ready()` holds; NotReadyError (with the output) if the process exits or time runs out first."""

    def ready_or_exited() -> bool:
        if process.poll() is not None:
            raise NotReadyError(f"{name} exited with {process.returncode} at startup:\n{output()}")
        return ready()

    if not wait_until(ready_or_exited, timeout, interval):
        raise NotReadyError(f"{name} was not ready within {timeout:g} s:\n{output()}")


def stop(process: subprocess.Popen[Any], stop_signal: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Ask the process to stop with `stop_signal`; SIGKILL if it has not within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(
    command: list[str],
    log: Path,
    *,
    stop_signal: int = signal.SIGTERM,
    stop_timeout: float = 30,
    **popen: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running, its stdout and stderr in `log`, until the block ends (then stopped)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, **popen)
    try:
        yield process
    finally:
        stop(process, stop_signal, stop_timeout)
