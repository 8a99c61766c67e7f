"""The results as a Markdown report and a PNG chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .load import LoadLevel
from .machine import Capacity
from .overload import OverloadResult
from .threadpool import SleepLevel


@dataclass
class Results:
    url: str
    command: str
    machine: dict[str, str]
    capacity: Capacity
    threadpool: list[SleepLevel] = field(default_factory=list)
    items: list[LoadLevel] = field(default_factory=list)
    overload: OverloadResult | None = None
    notes: list[str] = field(default_factory=list)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


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
            f"{level.p50_ms:.2f}",
            f"{level.p99_ms:.2f}",
            str(level.non_2xx + level.socket_errors),
        ]
        for level in levels
    ]
    return table(["connections", "req/s (2xx)", "p50 ms", "p99 ms", "errors or non-2xx"], rows)


def overload_table(result: OverloadResult) -> str:
    rows = [
        [
            status,
            f"{latency.count:,}",
            f"{100 * latency.share:.1f} %",
            f"{latency.p50_ms:.1f}",
            f"{latency.p99_ms:.1f}",
            f"{latency.service_p50_ms:.1f}",
            f"{latency.service_p99_ms:.1f}",
        ]
        for status, latency in result.by_status.items()
    ]
    header = ["status", "answers", "share", "p50 ms", "p99 ms", "sent→answer p50", "p99"]
    return table(header, rows)


def markdown(results: Results, chart: str | None) -> str:
    out = ["# Benchmark results", "", f"Service: {results.url}", ""]
    out += [f"- **{key}**: {value}" for key, value in results.machine.items()]
    capacity = results.capacity
    out += [
        f"- **service limits** ({capacity.source}): workers {capacity.workers or '?'},"
        f" admission limit {capacity.admission_limit or '?'} per worker,"
        f" thread limit {capacity.thread_limit or '?'} per worker",
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
    if results.overload:
        o = results.overload
        out += [
            "## Overload",
            "",
            f"Open loop: {o.rate:,.0f} requests/s asked for ({o.sent_rate:,.0f}/s sent) for"
            f" {o.duration:g} s over {o.connections} connections; latency counted from when each"
            " request was due, and (last two columns) from when it was sent."
            + (f" {o.unanswered} requests had no answer." if o.unanswered else ""),
            "",
            overload_table(o),
            "",
        ]
    out += [f"> {note}" for note in results.notes]
    return "\n".join(out).rstrip() + "\n"


def chart(results: Results, path: Path) -> bool:
    """Draw what was measured; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        name
        for name, present in (
            ("threadpool", results.threadpool),
            ("throughput", results.items),
            ("latency", results.items),
            ("overload", results.overload),
        )
        if present
    ]
    if not panels:
        return False
    columns = 2 if len(panels) > 2 else len(panels)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        if panel == "threadpool":
            for handler in dict.fromkeys(level.handler for level in results.threadpool):
                levels = [level for level in results.threadpool if level.handler == handler]
                xs = [level.concurrency for level in levels]
                axis.plot(xs, [level.total for level in levels], marker="o", label=handler)
            axis.set(title="sleeping endpoint", xlabel="concurrent requests", ylabel="total s")
            axis.set_ylim(bottom=0)
            axis.legend()
        elif panel == "throughput":
            labels = [str(level.concurrency) for level in results.items]
            axis.bar(labels, [level.ok_rps for level in results.items])
            axis.set(title="GET /items/{id}", xlabel="connections", ylabel="req/s")
        elif panel == "latency":
            labels = [str(level.concurrency) for level in results.items]
            axis.plot(labels, [level.p50_ms for level in results.items], marker="o", label="p50")
            axis.plot(labels, [level.p99_ms for level in results.items], marker="o", label="p99")
            axis.set(title="GET /items/{id} latency", xlabel="connections", ylabel="ms")
            axis.set_ylim(bottom=0)
            axis.legend()
        elif results.overload:
            statuses = list(results.overload.by_status.items())
            names = [status for status, _ in statuses]
            axis.bar(names, [100 * latency.share for _, latency in statuses])
            for index, (_, latency) in enumerate(statuses):
                label = f"p50 {latency.p50_ms:.0f} ms\np99 {latency.p99_ms:.0f} ms"
                axis.annotate(label, (index, 100 * latency.share), ha="center", va="bottom")
            axis.set(title=f"overload, {results.overload.rate:,.0f} req/s open loop")
            axis.set(xlabel="status", ylabel="% of answers")
            axis.set_ylim(0, 115)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
