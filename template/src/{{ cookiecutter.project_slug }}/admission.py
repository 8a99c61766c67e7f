"""Admission by waiting time: a worker takes a database request while it can expect a
connection within QUEUE_BUDGET_MS, and answers 503 with Retry-After at once when it cannot.

Why time and not a count: a count of waiting requests says nothing about how long they wait.
With 1 ms queries, 60 waiting requests cost a few milliseconds; with 2 s queries, even 5 are
too many. What a client feels, and what decides whether an answer is still worth giving, is
the wait.

How (hand-written: no library offers an asyncio admission queue for ASGI; each worker keeps
its own, on its event loop, so plain attributes are enough and nothing is locked):

- A worker has one permit per pooled connection (pool_size + max_overflow). An admitted
  request holds one for as long as its handler runs, so it never queues inside the pool.
- A request that finds every permit taken joins a queue if the wait it can expect fits the
  budget, or the queue is still shorter than the pool (see acquire()). The expectation is
  Little's law on what the worker measures: the requests queued ahead of it, times the mean
  time a permit is held (a moving average), over the permits. If it does not fit, the answer
  is 503 straight away: refusing costs microseconds instead of a budget's worth of waiting,
  and the client can retry elsewhere.
- A queued request that has waited the whole budget gets 503 too. The estimate can be wrong
  (a table lock makes every query slow at once); the deadline cannot.
- The queue is first in, first out. Adaptive LIFO (newest first once a queue stands, as in
  Facebook's "Fail at Scale", ACM Queue 2015) was tried and left out: under a closed-loop
  load that the worker serves in time (64 keep-alive clients, whose queue never empties), it
  kept the oldest waiting until their budget ran out and refused requests FIFO served. The
  estimate already keeps the queue within the budget, so FIFO needs no help under overload.
- A hard ceiling on queued requests (ADMISSION_QUEUE) bounds memory whatever the estimate.

Adaptive concurrency limits (Netflix's concurrency-limits, Envoy's adaptive concurrency
filter) learn a limit from latency when the bottleneck is unknown. Here it is known and
counted, the pool, whose size the capacity plan fixes: only the queue in front of it needs
controlling, and by the measure clients feel.

The decision is made by the route itself (AdmissionRoute, the route class of every router
whose routes use the database), once the request is routed and before any dependency runs.
While the gate would refuse at once, early_refusal.py answers database requests before
routing instead, so that a refusal costs a prepared answer and little else. Which routes use
the database is read from their dependencies when the route is built: a route that depends on
`Admitted` (every SessionDep and ReadConnectionDep does) is admitted; /healthz, /capacity and
handlers without a database dependency are never refused.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

# How fast the mean hold time follows what the permits measure: each release moves it this
# share of the way, so it tracks a change in query times within a few dozen requests.
HOLD_TIME_SMOOTHING = 0.05
# The scope key under which AdmissionRoute marks a request it admitted.
ADMITTED = "admission.admitted"


class OverloadedError(Exception):
    """The worker cannot serve this database request within its queue budget."""


@dataclass
class AdmissionStats:
    """What the gate decided since the worker started, for /capacity and the metrics."""

    admitted_at_once: int = 0
    admitted_after_waiting: int = 0
    refused_expected_wait: int = 0
    refused_queue_full: int = 0
    refused_waited_budget: int = 0

    @property
    def refused(self) -> int:
        return self.refused_expected_wait + self.refused_queue_full + self.refused_waited_budget


class AdmissionObserver(Protocol):
    """Told of every decision as it is made (metrics.AdmissionMetrics counts them)."""

    def admitted(self, waited: float, queued: bool) -> None: ...

    def refused(self, reason: str) -> None: ...  # expected_wait, queue_full or waited_budget


class Unobserved:
    def admitted(self, waited: float, queued: bool) -> None:
        pass

    def refused(self, reason: str) -> None:
        pass


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[None]
    since: float


@dataclass
class AdmissionGate:
    """One worker's permits (one per pooled connection) and the queue of requests waiting."""

    permits: int
    queue_budget: float  # seconds
    max_queue: int
    clock: Callable[[], float] = time.monotonic
    observer: AdmissionObserver = field(default_factory=Unobserved)
    free: int = field(init=False)
    mean_hold: float = field(default=0.0, init=False)
    stats: AdmissionStats = field(default_factory=AdmissionStats, init=False)
    _queue: deque[_Waiter] = field(default_factory=deque, init=False)
    _queued: int = field(default=0, init=False)  # waiters in _queue still waiting

    def __post_init__(self) -> None:
        self.free = self.permits

    @property
    def in_use(self) -> int:
        return self.permits - self.free

    @property
    def queued(self) -> int:
        return self._queued

    def expected_wait(self) -> float:
        """Seconds a request arriving now can expect to wait for a permit (Little's law)."""
        if self.free and not self._queued:
            return 0.0
        return (self._queued + 1) * self.mean_hold / self.permits

    async def acquire(self) -> float:
        """Take a permit, waiting at most the budget; the time waited. OverloadedError if not."""
        if self.free and not self._queued:
            self.free -= 1
            self.stats.admitted_at_once += 1
            self.observer.admitted(0.0, queued=False)
            return 0.0
        if (reason := self.refusal_reason()) is not None:
            self.refuse(reason)
            raise OverloadedError
        return await self._wait()

    def refusal_reason(self) -> str | None:
        """Why a request arriving now would be refused at once; None if it would be admitted
        or queued."""
        if self.free and not self._queued:
            return None
        if self._queued >= self.max_queue:
            return "queue_full"
        # A queue shorter than the pool always gets its chance (it waits one hold at most, if
        # the measure is right): after a stall the measure remembers the slow holds, and would
        # otherwise refuse the first requests of the recovery. The deadline still holds.
        if self._queued >= self.permits and self.expected_wait() > self.queue_budget:
            return "expected_wait"
        return None

    def refuse(self, reason: str) -> None:
        """Count a refusal at once (reason: queue_full or expected_wait)."""
        if reason == "queue_full":
            self.stats.refused_queue_full += 1
        else:
            self.stats.refused_expected_wait += 1
        self.observer.refused(reason)

    async def _wait(self) -> float:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), self.clock())
        self._queue.append(waiter)
        self._queued += 1
        timer = loop.call_later(self.queue_budget, self._expire, waiter)
        try:
            await waiter.future
        except OverloadedError:
            self.stats.refused_waited_budget += 1
            self.observer.refused("waited_budget")
            raise
        except asyncio.CancelledError:
            # The request was cancelled (its client left, or a deadline). While still waiting:
            # it no longer counts, and release() skips it. After the permit was handed to it:
            # pass the permit on. After it expired: it was already counted out.
            if waiter.future.cancelled():
                self._queued -= 1
            elif waiter.future.exception() is None:
                self._pass_on()
            raise
        finally:
            timer.cancel()
        self.stats.admitted_after_waiting += 1
        waited = self.clock() - waiter.since
        self.observer.admitted(waited, queued=True)
        return waited

    def _expire(self, waiter: _Waiter) -> None:
        if not waiter.future.done():
            self._queued -= 1
            waiter.future.set_exception(OverloadedError())

    def release(self, held: float, measured: bool = True) -> None:
        """Give a permit back after holding it `held` seconds: to a waiter, or to the pool.

        measured=False: the hold is not one to learn from (it included opening a connection).
        """
        if measured:
            self.mean_hold += HOLD_TIME_SMOOTHING * (held - self.mean_hold)
        self._pass_on()

    def _pass_on(self) -> None:
        waiter = self._next_waiter()
        if waiter is None:
            self.free += 1
            return
        self._queued -= 1
        waiter.future.set_result(None)

    def _next_waiter(self) -> _Waiter | None:
        """The longest-waiting request still waiting: first in, first out."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()
            if not waiter.future.done():  # else it timed out or was cancelled while waiting
                return waiter
        return None


class Hold:
    """An admitted request's hold of a permit, marked when it opened a new connection."""

    __slots__ = ("opened_connection",)

    def __init__(self) -> None:
        self.opened_connection = False


# The running request's hold (threads of sync handlers see it too: they run in a copy of the
# request's context, and the Hold is shared).
CURRENT_HOLD: contextvars.ContextVar[Hold | None] = contextvars.ContextVar(
    "admission.hold", default=None
)


def note_new_connection(*_: object) -> None:
    """The pool's connect event (db.py): the running request opened a connection.

    Opening one takes many times a query's hold (a worker's first requests, every request
    after the database restarted), and a mean fed with those holds would refuse requests the
    warm pool serves at once: such holds are left out of the mean.
    """
    hold = CURRENT_HOLD.get()
    if hold is not None:
        hold.opened_connection = True


async def require_admission(request: Request) -> None:
    """Marks a dependency as one that uses the database, and checks that the request was admitted.

    AdmissionRoute admits the requests of every route that depends on this before any of its
    dependencies run: by the time this runs, the request holds a permit.
    """
    if ADMITTED not in request.scope:
        raise RuntimeError(
            f"{request.method} {request.url.path} uses the database but was not admitted: give"
            " its router route_class=AdmissionRoute"
        )


Admitted = Annotated[None, Depends(require_admission)]


def uses_database(route: APIRoute) -> bool:
    """Whether the route depends on `Admitted`, directly or through other dependencies."""
    return _depends_on_admission(route.dependant)


def _depends_on_admission(dependant: Dependant) -> bool:
    return any(
        sub.call is require_admission or _depends_on_admission(sub)
        for sub in dependant.dependencies
    )


def refusal(retry_after: int) -> Response:
    """The 503 a refused request gets: made once per worker, sent as it is to every one."""
    return Response(
        b'{"detail":"overloaded: retry later"}',
        status_code=503,
        headers={"Retry-After": str(retry_after)},
        media_type="application/json",
    )


class AdmissionRoute(APIRoute):
    """A route that admits its requests through the worker's gate if it uses the database.

    The gate and the prepared refusal are the lifespan's (app.state.admission, .refusal). A
    permit is held while the handler runs and given back when it returns, as its connection is.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if not uses_database(self):
            return handle

        async def admit_then_handle(request: Request) -> Response:
            state = request.app.state
            gate: AdmissionGate = state.admission
            try:
                await gate.acquire()
            except OverloadedError:
                prepared: Response = state.refusal
                return prepared
            request.scope[ADMITTED] = True
            hold = Hold()
            token = CURRENT_HOLD.set(hold)
            started = gate.clock()
            try:
                return await handle(request)
            finally:
                CURRENT_HOLD.reset(token)
                gate.release(gate.clock() - started, measured=not hold.opened_connection)

        return admit_then_handle
