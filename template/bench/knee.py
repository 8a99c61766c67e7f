"""The knee: the highest offered load the service still serves within its queue budget.

Open-loop steps (see overload.py), each a few seconds at a fixed, generous number of
connections, the rate multiplied by `factor` from one step to the next. A step is within
capacity while its goodput tracks the offered load (at least TRACKING of it answered 200) and
the p99 of its 200 answers, counted from when each request was due, stays within the budget.
The search stops at the first step that is not; the knee is the step before it, and its
goodput is the capacity the overload runs are sized by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .overload import OK, OpenLoopResult, run_open_loop

TRACKING = 0.9


@dataclass(frozen=True)
class KneeSearch:
    budget_ms: float
    steps: list[OpenLoopResult] = field(default_factory=list)
    knee: OpenLoopResult | None = None

    @property
    def capacity(self) -> float:
        """Goodput at the knee, in 200 answers per second (0 if no step was within)."""
        return self.knee.ok_rps if self.knee else 0.0

    @property
    def unloaded_p99_ms(self) -> float:
        """p99 of the 200 answers at the first, lightest step."""
        first = self.steps[0].latency(OK) if self.steps else None
        return first.p99_ms if first else float("nan")


def within(step: OpenLoopResult, budget_ms: float) -> bool:
    ok = step.latency(OK)
    return ok is not None and step.ok_rps >= TRACKING * step.rate and ok.p99_ms <= budget_ms


def find_knee(
    url: str,
    paths: Sequence[str],
    budget_ms: float,
    start_rate: float,
    factor: float,
    seconds: float,
    connections: int,
    max_steps: int,
    progress: Callable[[str], None],
    timeout: float = 10,
) -> KneeSearch:
    steps: list[OpenLoopResult] = []
    knee = None
    rate = start_rate
    for _ in range(max_steps):
        step = run_open_loop(url, paths, rate, seconds, connections, timeout=timeout)
        steps.append(step)
        ok = step.latency(OK)
        progress(
            f"knee: offered {rate:8,.0f}/s  ok {step.ok_rps:8,.0f}/s"
            f"  503 {100 * step.refused_share:5.1f} %"
            + (f"  p50 {ok.p50_ms:7.1f} ms  p99 {ok.p99_ms:7.1f} ms" if ok else "  no 200 answers")
        )
        if not within(step, budget_ms):
            break
        knee = step
        rate *= factor
    return KneeSearch(budget_ms, steps, knee)
