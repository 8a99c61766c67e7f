"""How the benchmarks judge what they measured: the knee, the overload targets, the refusal cost.

The judging is plain arithmetic on measurements, so it is specified here on made-up ones; the
measuring itself is smoke-run against real services in test_benchmarks.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from benchmarks.__main__ import TargetOverload, load_bench, refusal_cost
from benchmarks.machine import Usage

bench = load_bench()
BUDGET_MS = 100.0
UNLOADED_P99_MS = 10.0  # so a 200 p99 up to 100 + 2 x 10 = 120 ms is within the target


def latency(count: int, p99_ms: float, sent_p99_ms: float | None = None) -> Any:
    sent = p99_ms if sent_p99_ms is None else sent_p99_ms
    return bench.overload.StatusLatency(count, 0.0, p99_ms / 2, p99_ms, sent / 2, sent)


def measured(
    rate: float,
    ok_rps: float,
    ok_p99_ms: float,
    refused: int = 0,
    refused_p99_ms: float = 5.0,
    healthz_p99_ms: float = 5.0,
    seconds: float = 10.0,
) -> Any:
    statuses = {"200": latency(round(ok_rps * seconds), ok_p99_ms)}
    if refused:
        statuses["503"] = latency(refused, 500.0, refused_p99_ms)
    probe = bench.overload.ProbeResult("/healthz", 100, 0, 1.0, healthz_p99_ms, healthz_p99_ms)
    return bench.overload.OpenLoopResult(
        rate=rate,
        sent_rate=rate,
        duration=seconds,
        elapsed=seconds,
        connections=256,
        requests=round(rate * seconds),
        by_status=statuses,
        probe=probe,
    )


def search(capacity: float = 1000.0) -> Any:
    first = measured(capacity / 4, capacity / 4, UNLOADED_P99_MS)
    knee = measured(capacity, capacity, 90.0)
    return bench.knee.KneeSearch(BUDGET_MS, [first, knee], knee)


@pytest.mark.parametrize(
    ("step", "is_within"),
    [
        (measured(1000, 1000, 99.0), True),
        (measured(1000, 1000, 101.0), False),  # the budget passed
        (measured(1000, 890, 50.0, refused=1100), False),  # goodput no longer tracks the load
        (measured(1000, 900, 50.0, refused=1000), True),  # 90 % is still tracking
    ],
    ids=["within", "p99 past the budget", "goodput below 90 %", "goodput at 90 %"],
)
def test_a_knee_step_is_within_while_goodput_tracks_and_p99_stays_in_the_budget(step: Any, is_within: bool) -> None:
    assert bench.knee.within(step, BUDGET_MS) is is_within


HELD = [measured(2000, 950, 110.0, refused=10000), measured(5000, 920, 115.0, refused=40000)]
REFUSING = measured(10000, 900, 118.0, refused=91000, refused_p99_ms=12.0)


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        (
            {2.0: HELD[0], 5.0: HELD[1], 10.0: REFUSING},
            {"2x: ok/s": True, "2x: 200 p99": True, "2x: /healthz p99": True, "5x: ok/s": True,
             "5x: 200 p99": True, "5x: /healthz p99": True, "10x: 503 p99": True},
        ),
        (
            {5.0: measured(5000, 899, 500.0), 10.0: measured(10000, 300, 9000.0)},
            {"5x: ok/s": False, "5x: 200 p99": False, "5x: /healthz p99": True, "10x: 503 p99": None},
        ),
        (
            {2.0: measured(2000, 1000, 121.0, healthz_p99_ms=50.0)},
            {"2x: ok/s": True, "2x: 200 p99": False, "2x: /healthz p99": False},
        ),
        (
            {10.0: measured(10000, 900, 100.0, refused=91000, refused_p99_ms=20.1)},
            {"10x: 503 p99": False},
        ),
    ],
    ids=["a service that holds", "one that queues", "just past the limits", "slow refusals"],
)  # fmt: skip
def test_each_overload_target_is_judged_met_or_not(runs: dict[float, Any], expected: dict[str, bool | None]) -> None:
    overloads = [bench.targets.OverloadRun(multiple, result) for multiple, result in runs.items()]
    verdicts = bench.targets.verdicts(search(), overloads)
    judged = {f"{verdict.multiple:g}x: {verdict.check}": verdict.met for verdict in verdicts}
    assert judged == expected, [(verdict.goal, verdict.measured) for verdict in verdicts]


def metered(ok: int, refused: int, served_us: float, refusal_us: float) -> tuple[Any, Usage]:
    result = measured(rate=ok + refused, ok_rps=ok, ok_p99_ms=10.0, refused=refused, seconds=1.0)
    cpu = (ok * served_us + refused * refusal_us) / 1e6
    return bench.targets.OverloadRun(1.0, result), Usage(1.0, cpu, 0.0, 0.0, {})


@pytest.mark.parametrize(
    ("mixes", "expected_us"),
    [
        ([(900, 1100), (900, 4100), (880, 9100)], 150.0),  # a service that refuses
        ([(900, 0), (850, 50)], 150.0),  # refusals in one run are enough
        ([(900, 0), (800, 0)], math.nan),  # a service that never refuses
        ([(900, 1100)], math.nan),  # one run cannot tell the two costs apart
    ],
    ids=["refusing", "a few refusals", "no refusals", "one run"],
)
def test_the_cost_of_a_refusal_is_fitted_over_the_overload_runs(
    mixes: list[tuple[int, int]], expected_us: float
) -> None:
    found = TargetOverload(knee=search())
    for ok, refused in mixes:
        run, usage = metered(ok, refused, served_us=1200.0, refusal_us=150.0)
        found.runs.append(run)
        found.usages.append(usage)
    fitted = refusal_cost(found)
    if math.isnan(expected_us):
        assert math.isnan(fitted)
    else:
        assert fitted == pytest.approx(expected_us, rel=1e-6)
