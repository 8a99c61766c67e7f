"""The admission gate on its own: permits, the queue budget, the estimate and the queue's order.

A fake clock drives the estimate, so these tests say what the gate decides, not how fast a
machine runs; the waits that really elapse are a few milliseconds.
"""

import asyncio

import pytest

from {{ cookiecutter.project_slug }}.admission import (
    CURRENT_HOLD,
    AdmissionGate,
    Hold,
    OverloadedError,
    note_new_connection,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the gate lives on the worker's asyncio event loop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(permits: int = 2, budget: float = 0.05, max_queue: int = 10) -> AdmissionGate:
    return AdmissionGate(permits=permits, queue_budget=budget, max_queue=max_queue, clock=Clock())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_free_permit_is_taken_without_waiting() -> None:
    g = gate()
    assert await g.acquire() == 0.0
    assert await g.acquire() == 0.0
    assert (g.free, g.in_use, g.stats.admitted_at_once) == (0, 2, 2)
    g.release(0.001)
    g.release(0.001)
    assert g.free == 2


async def test_a_request_queues_while_its_expected_wait_fits_the_budget() -> None:
    g = gate(permits=2, budget=1.0, max_queue=100)
    await g.acquire()
    await g.acquire()
    g.mean_hold = 0.2  # 2 permits: the n-th in the queue can expect n x 100 ms
    waiters = [asyncio.ensure_future(g.acquire()) for _ in range(10)]
    await settle()
    assert g.queued == 10, "the 10th expects 1 s: within the budget"
    assert g.expected_wait() == pytest.approx(1.1)
    with pytest.raises(OverloadedError):
        await g.acquire()
    assert g.stats.refused_expected_wait == 1, "the 11th would expect 1.1 s: refused at once"
    for _ in range(12):
        g.release(0.2)
        await settle()
    assert all(w.done() and w.exception() is None for w in waiters)
    assert (g.queued, g.free, g.stats.admitted_after_waiting) == (0, 2, 10)


async def test_after_a_stall_a_pool_of_requests_may_still_queue() -> None:
    g = gate(permits=2, budget=1.0, max_queue=100)
    await g.acquire()
    await g.acquire()
    g.mean_hold = 30.0  # what a table lock left behind: every hold took half a minute
    waiters = [asyncio.ensure_future(g.acquire()) for _ in range(2)]
    await settle()
    assert g.queued == 2, "a queue shorter than the pool waits, whatever the estimate"
    with pytest.raises(OverloadedError):
        await g.acquire()
    assert g.stats.refused_expected_wait == 1
    for _ in range(4):
        g.release(0.001)
        await settle()
    assert all(w.done() and w.exception() is None for w in waiters)


async def test_a_queued_request_that_waits_its_budget_is_refused() -> None:
    g = gate(permits=1, budget=0.02)
    await g.acquire()
    waiting = asyncio.ensure_future(g.acquire())
    await asyncio.sleep(0.05)
    with pytest.raises(OverloadedError):
        await waiting
    assert (g.queued, g.stats.refused_waited_budget) == (0, 1)
    g.release(0.001)
    assert g.free == 1, "the permit of a request that left goes back to the pool"


async def test_the_queue_cap_refuses_whatever_the_estimate() -> None:
    g = gate(permits=1, budget=10.0, max_queue=2)
    await g.acquire()
    queued = [asyncio.ensure_future(g.acquire()) for _ in range(2)]
    await settle()
    with pytest.raises(OverloadedError):
        await g.acquire()
    assert g.stats.refused_queue_full == 1
    for _ in range(3):
        g.release(0.0)
        await settle()
    await asyncio.gather(*queued)


async def test_the_longest_waiting_request_is_served_first() -> None:
    g = gate(permits=1, budget=1.0)
    await g.acquire()
    waiters = []
    for _ in range(3):
        waiters.append(asyncio.ensure_future(g.acquire()))
        await settle()
    waiters[1].cancel()  # one leaves the queue; the others keep their places
    await settle()
    g.release(0.0)
    await settle()
    assert waiters[0].done()
    assert not waiters[2].done()
    g.release(0.0)
    await settle()
    assert waiters[2].done()
    assert waiters[2].exception() is None


async def test_a_request_cancelled_while_waiting_leaves_the_queue() -> None:
    g = gate(permits=1, budget=1.0)
    await g.acquire()
    waiting = asyncio.ensure_future(g.acquire())
    await settle()
    waiting.cancel()
    await settle()
    assert g.queued == 0
    g.release(0.0)
    assert g.free == 1


async def test_a_permit_handed_to_a_request_cancelled_before_it_ran_is_passed_on() -> None:
    g = gate(permits=1, budget=1.0)
    await g.acquire()
    cancelled = asyncio.ensure_future(g.acquire())
    next_in_line = asyncio.ensure_future(g.acquire())
    await settle()
    g.release(0.0)  # hands the permit to `cancelled`...
    cancelled.cancel()  # ...which is cancelled before it resumes
    await settle()
    assert next_in_line.done()
    assert next_in_line.exception() is None
    g.release(0.0)
    assert (g.free, g.queued) == (1, 0)


async def test_the_mean_hold_time_follows_what_requests_measure() -> None:
    g = gate()
    for _ in range(200):
        await g.acquire()
        g.release(0.004)
    assert g.mean_hold == pytest.approx(0.004, rel=0.01)


async def test_a_hold_that_opened_a_connection_is_left_out_of_the_mean() -> None:
    g = gate()
    await g.acquire()
    g.release(0.010)
    mean = g.mean_hold
    hold = Hold()
    token = CURRENT_HOLD.set(hold)
    try:
        note_new_connection()  # what the pool's connect event calls while the request runs
    finally:
        CURRENT_HOLD.reset(token)
    assert hold.opened_connection
    await g.acquire()
    g.release(2.0, measured=not hold.opened_connection)
    assert g.mean_hold == mean, "a connect's two seconds would have made the mean 10x"
    assert g.free == g.permits
    note_new_connection()  # outside a request: nothing to mark, and no error
