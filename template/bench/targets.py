"""What the service promises under overload, checked against what was measured.

Sized by the knee (knee.py): at 2x and 5x the capacity measured there, goodput stays at 90 %
of that capacity, the p99 of the 200 answers stays within the queue budget plus twice the
unloaded p99, and /healthz answers within 50 ms; at 10x, refusals come back within 20 ms of
being sent. Each check says what it found, met or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .knee import KneeSearch
from .overload import OK, REFUSED, OpenLoopResult

GOODPUT_SHARE = 0.9
HEALTHZ_P99_MS = 50.0
REFUSAL_P99_MS = 20.0
HELD_MULTIPLES = (2.0, 5.0)  # the overloads at which the service must keep serving
REFUSAL_MULTIPLE = 10.0  # the overload at which refusals are timed
GOODPUT, LATENCY, HEALTHZ, REFUSAL = "ok/s", "200 p99", "/healthz p99", "503 p99"


@dataclass(frozen=True)
class OverloadRun:
    multiple: float  # of the capacity measured at the knee
    result: OpenLoopResult


@dataclass(frozen=True)
class Verdict:
    multiple: float
    check: str  # GOODPUT, LATENCY, HEALTHZ or REFUSAL
    goal: str
    measured: str
    met: bool | None  # None: nothing to judge (no such run, or no answer of that kind)


def verdicts(search: KneeSearch, runs: Sequence[OverloadRun]) -> list[Verdict]:
    by_multiple = {run.multiple: run.result for run in runs}
    found = []
    allowed = search.budget_ms + 2 * search.unloaded_p99_ms
    for multiple in HELD_MULTIPLES:
        result = by_multiple.get(multiple)
        name = f"{multiple:g}x"
        if result is None:
            continue
        floor = GOODPUT_SHARE * search.capacity
        found.append(
            Verdict(
                multiple,
                GOODPUT,
                f"{name}: ok/s ≥ {GOODPUT_SHARE:.0%} of the knee's {search.capacity:,.0f}",
                f"{result.ok_rps:,.0f}/s ({_share(result.ok_rps, search.capacity)} of it)",
                result.ok_rps >= floor if search.capacity else None,
            )
        )
        ok = result.latency(OK)
        found.append(
            Verdict(
                multiple,
                LATENCY,
                f"{name}: 200 p99 ≤ budget {search.budget_ms:g} + 2 x unloaded p99"
                f" {search.unloaded_p99_ms:.1f} = {allowed:,.1f} ms",
                f"{ok.p99_ms:,.1f} ms" if ok else "no 200 answers",
                ok.p99_ms <= allowed if ok else False,
            )
        )
        probe = result.probe
        if probe is not None:
            failed = f", {probe.failed} of {probe.count} failed" if probe.failed else ""
            found.append(
                Verdict(
                    multiple,
                    HEALTHZ,
                    f"{name}: /healthz p99 < {HEALTHZ_P99_MS:g} ms",
                    f"{probe.p99_ms:,.1f} ms over {probe.count} probes{failed}",
                    probe.p99_ms < HEALTHZ_P99_MS and not probe.failed,
                )
            )
    result = by_multiple.get(REFUSAL_MULTIPLE)
    if result is not None:
        refused = result.latency(REFUSED)
        found.append(
            Verdict(
                REFUSAL_MULTIPLE,
                REFUSAL,
                f"{REFUSAL_MULTIPLE:g}x: 503 p99 from sent ≤ {REFUSAL_P99_MS:g} ms",
                f"{refused.service_p99_ms:,.1f} ms over {refused.count:,} refusals"
                if refused
                else "no 503 answers",
                refused.service_p99_ms <= REFUSAL_P99_MS if refused else None,
            )
        )
    return found


def _share(value: float, reference: float) -> str:
    return f"{value / reference:.1%}" if reference else "-"
