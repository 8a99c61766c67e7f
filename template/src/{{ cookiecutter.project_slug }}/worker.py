"""The gunicorn worker: uvicorn-worker's UvicornWorker, with a shutdown that loses no request.

Hand-written because neither uvicorn nor uvicorn-worker offers these behaviours as settings:

- Keep-alive connections. uvicorn's shutdown closes every idle keep-alive connection at once.
  A client that has just sent its next request on one (a busy client always has) gets the
  connection closed or reset under it: measured, 11-17 requests lost per recycle under load.
  Here a connection with a request in flight is answered with `Connection: close`; an idle
  one stays open until its ordinary keep-alive timeout (KEEPALIVE), and a request arriving on
  it meanwhile is answered, with `Connection: close`. Closing waits no longer than an idle
  connection would wait anyway, and adds no race the keep-alive timeout does not have.
- The listening socket. The last process to close it resets every connection the kernel has
  accepted for it but no worker has picked up (40-100 ms of new connections after SIGTERM were
  reset). Here a worker takes what is queued, closes the socket in the same step, and serves
  what it took: after that, new connections are refused (no listener), never reset.
- Draining (DRAIN_SECONDS). On SIGTERM the worker first goes on serving for DRAIN_SECONDS
  while /readyz answers 503, so that a load balancer stops sending before the socket closes.
  Kubernetes' preStop sleep does the same before SIGTERM, so there it stays 0.
- Recycling (MAX_REQUESTS, off by default). A worker that has served MAX_REQUESTS requests
  (503 refusals do not count: a refusal storm must not recycle the worker while it is busiest)
  asks gunicorn for a replacement first and goes on serving until the replacement accepts
  connections; only then does it stop accepting and finish its requests. gunicorn alone
  starts the replacement only after the old worker has exited, so with one worker the
  instance answered nothing meanwhile (9.6 s measured with slow requests in flight).

The handover works with gunicorn's own controls: SIGTTIN to the master adds a worker, and
gunicorn.conf.py's child_exit hook takes it away again when the retiring worker exits. Marker
files in a private folder (worker_tmp_dir) say which workers are ready and which retire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from starlette.datastructures import State
from uvicorn._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from .settings import Settings

logger = logging.getLogger(__name__)

# A refusal: the service is overloaded or its database is (see overload.py).
REFUSED = 503


class Handover:
    """Marker files shared by the master and its workers: `ready-<pid>` once a worker accepts
    connections, `retiring-<pid>` once a worker has asked for its replacement."""

    def __init__(self) -> None:
        self.folder: Path | None = None

    def open(self, tmp_dir: str | None) -> None:
        """In the master, before any worker is forked (the workers inherit the folder)."""
        self.folder = Path(tempfile.mkdtemp(prefix="handover-", dir=tmp_dir))

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _marker(self, kind: str, pid: int) -> Path:
        assert self.folder is not None, "Handover.open() runs in gunicorn's on_starting hook"
        return self.folder / f"{kind}-{pid}"

    def ready_pids(self) -> set[int]:
        if self.folder is None:
            return set()
        return {int(path.name.removeprefix("ready-")) for path in self.folder.glob("ready-*")}

    def mark_ready(self, pid: int) -> None:
        if self.folder is not None:
            self._marker("ready", pid).touch()

    def mark_retiring(self, pid: int) -> None:
        self._marker("retiring", pid).touch()

    def worker_exited(self, server: Arbiter, pid: int) -> None:
        """In the master, when a worker has exited: a retired worker's extra slot goes away."""
        if self.folder is None:
            return
        self._marker("ready", pid).unlink(missing_ok=True)
        retiring = self._marker("retiring", pid)
        if retiring.exists():
            retiring.unlink()
            # Not below the configured count: a reload (SIGHUP) may have reset it meanwhile.
            if server.num_workers > server.cfg.workers:
                server.num_workers -= 1


handover = Handover()


class ShutdownState:
    """What the app wrapper and the server share within one worker."""

    def __init__(self) -> None:
        self.served = 0  # responses other than refusals, for MAX_REQUESTS
        self.closing = False  # answer with Connection: close from now on


def wrap(app: ASGI3Application, state: ShutdownState) -> ASGI3Application:
    """The app, counting its responses and, once the worker is closing, closing connections."""

    async def wrapped(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def sending(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                if message["status"] != REFUSED:
                    state.served += 1
                if state.closing:
                    headers = [*message.get("headers", ()), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, sending)

    return wrapped


class ServiceServer(Server):
    """uvicorn's Server with the handover, the drain and the keep-alive-safe shutdown."""

    def __init__(self, worker: ServiceWorker) -> None:
        super().__init__(config=worker.config)
        self.worker = worker
        self.state = worker.shutdown_state
        self.retiring_since: float | None = None
        self.ready_before: set[int] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            handover.mark_ready(os.getpid())

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        limit = self.worker.request_limit
        if limit is None or self.state.served < limit:
            return False
        return self._replaced()

    def _replaced(self) -> bool:
        """Ask for a replacement once; True when it accepts (or has not within the timeout)."""
        pid = os.getpid()
        if handover.folder is None:  # run without gunicorn.conf.py's hooks: no one to ask
            return True
        if self.retiring_since is None:
            logger.info(
                "worker %d served %d requests (MAX_REQUESTS): starting its replacement",
                pid,
                self.state.served,
            )
            self.retiring_since = time.monotonic()
            self.ready_before = handover.ready_pids()
            handover.mark_retiring(pid)
            os.kill(self.worker.ppid, signal.SIGTTIN)
            return False
        if handover.ready_pids() - self.ready_before - {pid}:
            logger.info("worker %d: its replacement accepts connections; retiring", pid)
            return True
        if time.monotonic() - self.retiring_since > self.worker.timeout:
            logger.warning(
                "worker %d: no replacement within %ds; retiring", pid, self.worker.timeout
            )
            return True
        return False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        self.state.closing = True
        if self.should_exit:  # a signal, not a recycle: the service is stopping
            await self._drain(self.worker.drain_seconds)
        taken = self._close_listeners(sockets or [])
        loop = asyncio.get_running_loop()
        for connection in taken:
            await loop.connect_accepted_socket(self._protocol, connection)
        self._close_connections_when_idle()
        await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(
                self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown
            )
        except TimeoutError:
            tasks = self.server_state.tasks
            logger.error("Cancel %d running task(s): graceful shutdown timed out", len(tasks))
            for task in tasks:
                task.cancel(msg="graceful shutdown timed out")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _drain(self, seconds: float) -> None:
        """Go on serving for `seconds`, with /readyz answering 503."""
        if seconds <= 0:
            return
        logger.info("worker %d: draining for %gs before it stops accepting", os.getpid(), seconds)
        self.worker.app_state().draining = True
        await asyncio.sleep(seconds)

    def _close_listeners(self, sockets: Iterable[socket.socket]) -> list[socket.socket]:
        """Take the connections queued on the listening sockets and close them, in one step:
        nothing runs on the event loop in between, so nothing the kernel queues is left to be
        reset when the socket closes."""
        taken: list[socket.socket] = []
        for listener in sockets:
            listener.setblocking(False)
            while True:
                try:
                    connection, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # closed under us, or out of descriptors: nothing more to take
                    break
                connection.setblocking(False)
                taken.append(connection)
        for server in self.servers:
            server.close()
        for listener in sockets:
            listener.close()
        return taken

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )

    def _close_connections_when_idle(self) -> None:
        """A request in flight is answered with Connection: close; an idle connection closes at
        its keep-alive timeout (uvicorn's HTTP protocols arm it after each response; one that
        has not had a request yet gets it now)."""
        loop = asyncio.get_running_loop()
        for connection in list(self.server_state.connections):
            if not isinstance(connection, H11Protocol | HttpToolsProtocol):
                connection.shutdown()  # a WebSocket: uvicorn's way
            elif connection.cycle is not None and not connection.cycle.response_complete:
                connection.shutdown()  # uvicorn's: Connection: close on the response in flight
            elif connection.timeout_keep_alive_task is None:
                connection.timeout_keep_alive_task = loop.call_later(
                    self.config.timeout_keep_alive, connection.timeout_keep_alive_handler
                )


class ServiceWorker(UvicornWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """UvicornWorker serving through ServiceServer; gunicorn.conf.py names it worker_class."""

    # The access line is the service's own (observe.py, with route and duration): not uvicorn's.
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, "access_log": False}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # MAX_REQUESTS is counted here, without refusals, instead of by uvicorn.
        self.config.limit_max_requests = None
        self.request_limit: int | None = self.max_requests if self.cfg.max_requests > 0 else None
        self.drain_seconds = Settings().drain_seconds
        self.shutdown_state = ShutdownState()

    def app_state(self) -> State:
        """The application's `app.state` (FastAPI's), where /readyz looks for `draining`."""
        state: State = self.wsgi.state
        return state

    async def _serve(self) -> None:
        self.config.app = wrap(self.wsgi, self.shutdown_state)
        server = ServiceServer(self)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
