"""The results as a Markdown report and a PNG chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .knee import KneeSearch, within
from .load import LoadLevel
from .machine import Capacity
from .overload import OK, REFUSED, OpenLoopResult
from .targets import OverloadRun, Verdict
from .threadpool import SleepLevel


@dataclass
class Results:
    url: str
    command: str
    machine: dict[str, str]
    capacity: Capacity
    budget_ms: float
    budget_source: str
    threadpool: list[SleepLevel] = field(default_factory=list)
    items: list[LoadLevel] = field(default_factory=list)
    knee: KneeSearch | None = None
    overload: list[OverloadRun] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ms(value: float) -> str:
    return "-" if value != value else f"{value:,.1f}"  # NaN: nothing of that kind


def threadpool_table(levels: list[SleepLevel]) -> str:
    handlers = list(dict.fromkeys(level.handler for level in levels))
    concurrencies = sorted({level.concurrency for level in levels})
    by = {(level.handler, level.concurrency): level for level in levels}
    rows = []
    for concurrency in concurrencies:
        row = [str(concurrency)]
        for handler in handlers:
            level = by.get((handler, concurrency))
            failed = f" ({level.failed} failed)" if level and level.failed else ""
            row.append(f"{level.total:.2f} s{failed}" if level else "")
        rows.append(row)
    return table(["concurrent requests", *(f"`{handler}`" for handler in handlers)], rows)


def items_table(levels: list[LoadLevel]) -> str:
    rows = [
        [
            str(level.concurrency),
            f"{level.ok_rps:,.0f}",
            f"{100 * level.refused_share:.1f} %",
            f"{level.p50_ms:.2f}",
            f"{level.p99_ms:.2f}",
            str(level.non_2xx - level.refused + level.socket_errors),
        ]
        for level in levels
    ]
    header = ["connections", "ok/s", "503 share", "p50 ms", "p99 ms", "other errors"]
    return table(header, rows)


def knee_table(search: KneeSearch) -> str:
    rows = []
    for step in search.steps:
        ok = step.latency(OK)
        rows.append(
            [
                f"{step.rate:,.0f} ({step.sent_rate:,.0f})",
                f"{step.ok_rps:,.0f}",
                f"{100 * step.refused_share:.1f} %",
                ms(ok.p50_ms) if ok else "-",
                ms(ok.p99_ms) if ok else "-",
                ("**knee**" if step is search.knee else "yes")
                if within(step, search.budget_ms)
                else "no",
            ]
        )
    header = ["offered/s (sent)", "ok/s", "503 share", "200 p50 ms", "200 p99 ms", "within"]
    return table(header, rows)


def overload_rows(runs: Sequence[OverloadRun], capacity: float) -> list[list[str]]:
    rows = []
    for run in runs:
        result = run.result
        ok, refused, probe = result.latency(OK), result.latency(REFUSED), result.probe
        others = result.requests - result.count(OK) - result.count(REFUSED)
        rows.append(
            [
                f"{run.multiple:g}x",
                f"{result.rate:,.0f} ({result.sent_rate:,.0f})",
                f"{result.ok_rps:,.0f}"
                + (f" ({result.ok_rps / capacity:.0%})" if capacity else ""),
                f"{100 * result.refused_share:.1f} %",
                ms(ok.p50_ms) if ok else "-",
                ms(ok.p99_ms) if ok else "-",
                ms(refused.service_p99_ms) if refused else "-",
                ms(probe.p99_ms) if probe else "-",
                f"{others:,}",
            ]
        )
    return rows


OVERLOAD_HEADER = [
    "overload",
    "offered/s (sent)",
    "ok/s (of the knee's)",
    "503 share",
    "200 p50 ms",
    "200 p99 ms",
    "503 p99 ms from sent",
    "/healthz p99 ms",
    "errors or unsent",
]


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    marks = {True: "met", False: "**not met**", None: "nothing to judge"}
    return table(
        ["target", "measured", ""],
        [[verdict.goal, verdict.measured, marks[verdict.met]] for verdict in verdicts],
    )


def markdown(results: Results, chart: str | None) -> str:
    out = ["# Benchmark results", "", f"Service: {results.url}", ""]
    out += [f"- **{key}**: {value}" for key, value in results.machine.items()]
    capacity = results.capacity
    out += [
        f"- **service limits** ({capacity.source}): workers {capacity.workers or '?'},"
        f" thread limit {capacity.thread_limit or '?'} per worker",
        f"- **queue budget**: {results.budget_ms:g} ms ({results.budget_source})",
        f"- **command**: `{results.command}`",
        "",
    ]
    if chart:
        out += [f"![charts]({chart})", ""]
    if results.threadpool:
        sleep = results.threadpool[0].sleep
        out += [
            "## Threadpool: sleeping endpoints",
            "",
            f"Total time for N concurrent requests to an endpoint that sleeps {sleep:g} s."
            f" A `def` handler holds one of the worker's {capacity.thread_limit or '?'} threads"
            " while it sleeps; an `async def` one holds none.",
            "",
            threadpool_table(results.threadpool),
            "",
        ]
    if results.items:
        out += [
            "## GET /items/{id}",
            "",
            "wrk, one thread, each connection sending its next request when the answer arrives.",
            "",
            items_table(results.items),
            "",
        ]
    if results.knee:
        search = results.knee
        first = search.steps[0] if search.steps else None
        out += [
            "## The knee",
            "",
            "Open loop (requests due at a fixed rate, latency counted from when each was due),"
            f" {first.duration if first else 0:g} s per step over"
            f" {first.connections if first else 0} connections, the offered rate rising until"
            f" the 200 answers' p99 passes the budget ({search.budget_ms:g} ms) or fewer than 90 %"
            f" of the requests are answered 200. Capacity at the knee: {search.capacity:,.0f}"
            " ok/s.",
            "",
            knee_table(search),
            "",
        ]
    if results.overload:
        first_run = results.overload[0].result
        capacity_rps = results.knee.capacity if results.knee else 0.0
        out += [
            "## Overload",
            "",
            f"Open loop at multiples of the knee's capacity, {first_run.duration:g} s each over"
            f" {first_run.connections} connections, /healthz probed meanwhile on a connection of"
            " its own. Latency of 200 answers from when each request was due; of 503 answers"
            " from when it was sent.",
            "",
            table(OVERLOAD_HEADER, overload_rows(results.overload, capacity_rps)),
            "",
        ]
    if results.verdicts:
        out += ["## Targets", "", verdict_table(results.verdicts), ""]
    out += [f"> {note}" for note in results.notes]
    return "\n".join(out).rstrip() + "\n"


def offered_load_curves(
    search: KneeSearch | None, runs: Sequence[OverloadRun]
) -> list[OpenLoopResult]:
    """Every open-loop measurement of one target, by offered rate."""
    found = [*(search.steps if search else []), *(run.result for run in runs)]
    return sorted(found, key=lambda result: result.rate)


def draw_offered_load(
    goodput: Any,  # noqa: ANN401 (matplotlib axes)
    latency: Any,  # noqa: ANN401
    curves: Mapping[str, Sequence[OpenLoopResult]],
    budget_ms: float,
) -> None:
    """Goodput and p50/p99 of the 200 answers against offered load, one line per target."""
    lowest, highest = float("inf"), 1.0
    for index, (name, results) in enumerate(curves.items()):
        color = f"C{index}"
        rates = [result.rate for result in results]
        lowest, highest = min([lowest, *rates]), max([highest, *rates])
        goodput.plot(
            rates, [result.ok_rps for result in results], marker="o", color=color, label=name
        )
        oks = [result.latency(OK) for result in results]
        p50 = [ok.p50_ms if ok else float("nan") for ok in oks]
        p99 = [ok.p99_ms if ok else float("nan") for ok in oks]
        latency.plot(rates, p99, marker="o", color=color, label=f"{name} p99")
        latency.plot(rates, p50, marker=".", linestyle="--", color=color, label=f"{name} p50")
    lowest = min(lowest, highest)
    goodput.plot([lowest, highest], [lowest, highest], color="grey", linestyle=":", label="offered")
    goodput.set(
        title="goodput against offered load", xlabel="offered req/s", ylabel="200 answers/s"
    )
    goodput.set_xscale("log")
    goodput.set_yscale("log")
    goodput.legend()
    latency.axhline(budget_ms, color="grey", linestyle=":", label=f"budget {budget_ms:g} ms")
    latency.set(title="200 latency from due", xlabel="offered req/s", ylabel="ms")
    latency.set_xscale("log")
    latency.set_yscale("log")
    latency.legend(fontsize="small")


def chart(results: Results, path: Path) -> bool:
    """Draw what was measured; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    curves = offered_load_curves(results.knee, results.overload)
    panels = [
        name
        for name, present in (
            ("threadpool", results.threadpool),
            ("throughput", results.items),
            ("latency", results.items),
            ("goodput", curves),
            ("offered latency", curves),
        )
        if present
    ]
    if not panels:
        return False
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    by_panel = dict(zip(panels, axes.flat, strict=False))
    if "threadpool" in by_panel:
        axis = by_panel["threadpool"]
        for handler in dict.fromkeys(level.handler for level in results.threadpool):
            levels = [level for level in results.threadpool if level.handler == handler]
            xs = [level.concurrency for level in levels]
            axis.plot(xs, [level.total for level in levels], marker="o", label=handler)
        axis.set(title="sleeping endpoint", xlabel="concurrent requests", ylabel="total s")
        axis.set_ylim(bottom=0)
        axis.legend()
    if "throughput" in by_panel:
        axis = by_panel["throughput"]
        labels = [str(level.concurrency) for level in results.items]
        axis.bar(labels, [level.ok_rps for level in results.items])
        axis.set(title="GET /items/{id}, closed loop", xlabel="connections", ylabel="ok/s")
        axis = by_panel["latency"]
        axis.plot(labels, [level.p50_ms for level in results.items], marker="o", label="p50")
        axis.plot(labels, [level.p99_ms for level in results.items], marker="o", label="p99")
        axis.set(title="GET /items/{id} latency, closed loop", xlabel="connections", ylabel="ms")
        axis.set_ylim(bottom=0)
        axis.legend()
    if "goodput" in by_panel:
        draw_offered_load(
            by_panel["goodput"], by_panel["offered latency"], {"service": curves}, results.budget_ms
        )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
