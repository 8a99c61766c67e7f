"""BENCHMARKS.md from one run's measurements. Every number in it comes from the run."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from tests.support.answers import DRIVERS, default_answers

STEP_TEXT = {
    "orm": "as first generated: ORM `session.get`, response_model, `pool_pre_ping=True`",
    "idle_ping": "pre-ping only connections idle for 2 s, not at every checkout",
    "autocommit": "+ autocommit connection: no BEGIN/ROLLBACK around the SELECT",
    "core": "+ Core SELECT of four columns instead of the ORM",
    "preserialised": "+ JSON made once by pydantic, returned as a Response",
    "async": "**the async variant as generated now** (same path as the step above)",
    "driver_fetch": "generated, but the statement run by asyncpg on the connection SQLAlchemy's pool checks out",
    "fastapi_asyncpg": "bound: the same FastAPI app and admission, the route on a raw asyncpg pool",
    "asyncio_h11": "generated, on asyncio's loop and h11 instead of uvloop and httptools",
    "no_access_log": "generated, with its access line off",
    "no_database": "FastAPI floor: the same app, route answering constant bytes",
    "raw_no_database": "raw floor: the baseline's ASGI app answering constant bytes",
    "baseline": "**baseline**: bare ASGI + asyncpg pool",
}


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def write_report(measured: Any, output: Path) -> None:
    output.write_text("\n".join(lines(measured)) + "\n")


def lines(m: Any) -> list[str]:
    out = [
        "# Benchmarks",
        "",
        "Written by `" + m.command + "` on " + datetime.date.today().isoformat() + " (do not edit by hand:"
        " run it again). It generates the async and sync variants with the default answers, serves each and the"
        " reference (a plain FastAPI app on a raw asyncpg pool, what a user would write instead) side by side on"
        " the same machine and database, and loads them with the generated project's own `bench/` code and wrk."
        " Server CPU per request (utime + stime of the gunicorn master and its workers over each measurement,"
        " from /proc) leads: on a shared 2-core machine throughput moves by ±30 % between runs, CPU per request"
        " much less.",
        "",
        *machine_section(m),
        *items_section(m),
        *profile_section(m),
        *overload_section(m),
        *orm_section(m),
        *threadpool_section(m),
        *ablation_section(m),
        *commands_section(m),
    ]
    return out


def machine_section(m: Any) -> list[str]:
    plan = m.plan
    usages = m.usages
    total = max(1e-9, sum(usage.seconds for usage in usages))
    others = sum(usage.others for usage in usages) / total
    cpus = usages[0].cores if usages else {}
    cores = {cpu: sum(usage.cores.get(cpu, 0) * usage.seconds for usage in usages) / total for cpu in cpus}
    versions = ", ".join(f"{name} {version}" for name, version in m.versions.items())
    libraries = "; ".join(f"{target}: {', '.join(sorted(found)) or 'neither'}" for target, found in m.libraries.items())
    answers = default_answers()
    out = ["## The machine", ""]
    out += [f"- **{key}**: {value}" for key, value in m.machine.items() if key != "packages"]
    out += [
        f"- **PostgreSQL**: {m.postgres} (throwaway cluster, fsync off)",
        f"- **services' packages**: {versions}",
        f"- **layout**: gunicorn (2 workers, uvicorn-worker) pinned to CPU {plan.server_cpu}; wrk, the open-loop"
        f" sender and PostgreSQL pinned to CPU {plan.load_cpu}. Pools: {answers['pool_size']} +"
        f" {answers['max_overflow']} overflow per worker (the default answers)"
        + f"; queue budget {m.budget_ms:g} ms ({m.budget_source}).",
        f"- **uvloop / httptools loaded by the workers**: {libraries}",
        "- **other load on the host** while wrk ran: "
        + ", ".join(f"{cpu} {100 * busy:.0f} % busy" for cpu, busy in cores.items())
        + f"; processes other than the server, PostgreSQL and the load used {others:.2f} CPU-seconds per second."
        " Throughput and latency move with that; the server CPU per request (µs) moves much less.",
        "",
    ]
    return out


REFERENCE = "fastapi"


def items_section(m: Any) -> list[str]:
    plan = m.plan
    reference = {summary.concurrency: summary for summary in m.items.get(REFERENCE, [])}
    rows = []
    for target, summaries in m.items.items():
        for summary in summaries:
            ref = reference.get(summary.concurrency)
            rows.append(
                [
                    target,
                    str(summary.concurrency),
                    f"{summary.server_us:,.0f}",
                    ratio(summary.server_us, ref.server_us) if ref else "-",
                    f"{summary.ok_rps:,.0f} ({summary.rps_low:,.0f}-{summary.rps_high:,.0f})",
                    f"{100 * summary.refused_share:.1f} %",
                    f"{summary.p50_ms:.2f}",
                    f"{summary.p99_ms:.2f}",
                    ratio(summary.ok_rps, ref.ok_rps) if ref else "-",
                    f"{summary.postgres_us:,.0f}",
                    f"{summary.connections_per_1000:,.1f}",
                    str(summary.errors),
                ]
            )
    header = ["target", "connections", "server CPU µs/req", "CPU vs FastAPI", "ok/s (slowest-fastest round)"]
    header += ["503 share", "p50 ms", "p99 ms", "ok/s vs FastAPI", "PostgreSQL CPU µs/req"]
    header += ["new connections per 1000 req", "other errors"]
    out = [
        "## GET /items/{id}: the variants against a plain FastAPI app",
        "",
        f"wrk, one thread, {plan.duration:g} s per measurement after {plan.warmup:g} s of warm-up, over"
        f" {plan.items} item ids; every server up at once and measured in turn, {plan.rounds} rounds, medians"
        " shown. `fastapi`, the bound, is `benchmarks/fastapi_app.py`: one FastAPI route returning a pydantic"
        " model, an asyncpg pool opened in the lifespan and sized like the variants' pool, no middleware, no"
        " admission control and no access log, served like the variants (gunicorn, uvicorn-worker, the same"
        " workers and keep-alive). `fastapi_logged` is the same app with only an access line per request added,"
        " written through the service's JSON logging. Server CPU µs/req counts every answer, 200 or 503.",
        "",
        *table(header, rows),
        "",
    ]
    goal = _goal(m)
    if goal:
        out += [goal, ""]
    return out


def _goal(m: Any) -> str:
    head = m.plan.headline
    found = {t: lv for t, levels in m.items.items() for lv in levels if lv.concurrency == head}
    if REFERENCE not in found:
        return ""
    ref = found[REFERENCE]
    parts = []
    for variant in DRIVERS:
        if variant not in found:
            continue
        cpu, rps = found[variant].server_us / ref.server_us, found[variant].ok_rps / ref.ok_rps
        most_cpu, least_rps = COST_GOALS[variant]
        met = "met" if cpu <= most_cpu and rps >= least_rps else "not met"
        parts.append(
            f"the {variant} variant spends {found[variant].server_us:,.0f} µs of server CPU per request,"
            f" {cpu:.2f}x the plain FastAPI app's {ref.server_us:,.0f}, and serves {rps:.2f}x its ok/s"
            f" (goal: at most {most_cpu:g}x and at least {least_rps:g}x: {met})"
        )
    return f"At {head} connections " + "; ".join(parts) + "." if parts else ""


# The per-request goals against the bound at the headline concurrency: (most CPU, least ok/s).
COST_GOALS = {"async": (1.5, 0.65), "sync": (2.0, 0.5)}


def overload_section(m: Any) -> list[str]:
    if not m.overload:
        return []
    plan = m.plan
    out = [
        "## Knee and overload",
        "",
        f"`bench/knee.py` and `bench/overload.py`, open loop: requests due at a fixed rate over {plan.connections}"
        " keep-alive connections (more than any target answers at once), latency counted from when each request"
        f" was due. The knee: {plan.knee_step:g} s steps, the offered rate x{plan.knee_factor:g} per step from a"
        " quarter of the target's best wrk throughput, until the 200 answers' p99 passes the queue budget"
        f" ({m.budget_ms:g} ms, {m.budget_source}) or fewer than 90 % of the requests are answered 200; the"
        " knee is the last step within, its ok/s the target's capacity. Then"
        f" {', '.join(f'{multiple:g}x' for multiple in plan.multiples)} that capacity for"
        f" {plan.overload_duration:g} s each, /healthz probed meanwhile on a connection of its own, one request"
        " after the other.",
        "",
    ]
    if m.chart:
        out += [f"![goodput and latency against offered load]({m.chart})", ""]
    knee_rows = []
    for target, found in m.overload.items():
        for step in found.knee.steps:
            ok = step.latency("200")
            knee_rows.append(
                [
                    target,
                    f"{step.rate:,.0f} ({step.sent_rate:,.0f})",
                    f"{step.ok_rps:,.0f}",
                    f"{100 * step.refused_share:.1f} %",
                    _ms(ok.p50_ms) if ok else "-",
                    _ms(ok.p99_ms) if ok else "-",
                    "**knee**" if step is found.knee.knee else "",
                ]
            )
    out += [
        *table(["target", "offered/s (sent)", "ok/s", "503 share", "200 p50 ms", "200 p99 ms", ""], knee_rows),
        "",
    ]
    rows = []
    for target, found in m.overload.items():
        capacity = found.knee.capacity
        for run, usage in zip(found.runs, found.usages, strict=True):
            result = run.result
            ok, refused, probe = result.latency("200"), result.latency("503"), result.probe
            answered = result.count("200") + result.count("503")
            rows.append(
                [
                    target,
                    f"{run.multiple:g}x",
                    f"{1e6 * usage.server / answered:,.0f}" if answered else "-",
                    f"{result.rate:,.0f} ({result.sent_rate:,.0f})",
                    f"{result.ok_rps:,.0f} ({result.ok_rps / capacity:.0%})" if capacity else "-",
                    f"{100 * result.refused_share:.1f} %",
                    _ms(ok.p50_ms) if ok else "-",
                    _ms(ok.p99_ms) if ok else "-",
                    _ms(refused.service_p99_ms) if refused else "-",
                    _ms(probe.p99_ms) if probe else "-",
                    f"{result.requests - answered:,}",
                ]
            )
    header = ["target", "overload", "server CPU µs/answer", "offered/s (sent)", "ok/s (of the knee's)"]
    header += ["503 share", "200 p50 ms", "200 p99 ms", "503 p99 ms from sent", "/healthz p99 ms"]
    header += ["errors or unsent"]
    out += [*table(header, rows), ""]
    short = [
        f"{target} {run.multiple:g}x ({run.result.sent_rate:,.0f} of {run.result.rate:,.0f} req/s)"
        for target, found in m.overload.items()
        for run in found.runs
        if run.result.sent_rate < 0.95 * run.result.rate
    ]
    if short:
        out += [
            "The sender fell short of the offered rate in "
            + ", ".join(short)
            + ": every connection was waiting for an answer, or the sender's own core was full; the latency"
            " from due counts the wait either way.",
            "",
        ]
    return [*out, *targets_section(m)]


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:,.1f}"  # NaN: nothing of that kind


def targets_section(m: Any) -> list[str]:
    marks = {True: "met", False: "**not met**", None: "nothing to judge"}
    rows = []
    for target, found in m.overload.items():
        refusal, served = found.refusal_us, found.served_us
        if refusal == refusal:  # not NaN
            rows.append(
                [
                    target,
                    "server CPU per 503 ≤ 1/4 of a served GET /items/{id}",
                    f"{refusal:,.0f} µs against {served:,.0f} µs ({refusal / served:.2f}x)",
                    marks[refusal <= served / 4],
                ]
            )
        else:
            rows.append(
                [target, "server CPU per 503 ≤ 1/4 of a served GET /items/{id}", "too few 503s to fit", marks[None]]
            )
        if found.knee.knee is None:
            rows.append([target, "a knee within the budget", "no step was within", marks[False]])
        rows += [[target, verdict.goal, verdict.measured, marks[verdict.met]] for verdict in found.verdicts]
    return [
        "### Targets",
        "",
        "CPU per 503 is fitted over the overload runs (server CPU = a x 200 answers + b x 503 answers, least"
        " squares; b is shown), against the server CPU per request at"
        f" {m.plan.headline} connections in the first table. The plain FastAPI app has no admission control:"
        " the targets show what a service without it does, not promises it makes.",
        "",
        *table(["target", "goal", "measured", ""], rows),
        "",
    ]


def profile_section(m: Any) -> list[str]:
    if not m.profile:
        return []
    head = m.plan.headline
    cost = {t: lv.server_us for t, levels in m.items.items() for lv in levels if lv.concurrency == head}
    targets = list(m.profile)
    components = list(dict.fromkeys(name for shares in m.profile.values() for name in shares))
    rows = []
    for name in components:
        cells = [name]
        for target in targets:
            share = m.profile[target].get(name, 0.0)
            cells.append(f"{share * cost.get(target, float('nan')):,.0f} ({100 * share:.0f} %)" if share else "-")
        rows.append(cells)
    rows.append(["**total** (server CPU µs/req above)", *(f"{cost.get(t, float('nan')):,.0f}" for t in targets)])
    return [
        "## Where a request's CPU goes",
        "",
        f"py-spy sampling one worker of each target while wrk loads it at {head} connections"
        f" ({m.plan.profile_seconds:g} s, the thread holding the GIL: the one running Python), each sample put"
        " down to the component of its innermost frame that belongs to one (`benchmarks/profile.py` has the"
        " rules); C code that releases the GIL (libpq, epoll) is not counted. µs per request are each share of"
        f" the server CPU per request measured at {head} connections in the table above.",
        "",
        *table(["component", *(f"{t}: µs/req (share)" for t in targets)], rows),
        "",
    ]


ORM_REFERENCE = "fastapi_orm"
ORM_GOAL = 2.0  # at most this many times the ORM reference's server CPU per request


def orm_section(m: Any) -> list[str]:
    if not m.orm:
        return []
    rows, verdicts = [], []
    for request, by_target in m.orm.items():
        ref = by_target.get(ORM_REFERENCE)
        for target, summary in by_target.items():
            rows.append(
                [
                    request,
                    target,
                    f"{summary.server_us:,.0f}",
                    ratio(summary.server_us, ref.server_us) if ref else "-",
                    f"{summary.ok_rps:,.0f}",
                    ratio(summary.ok_rps, ref.ok_rps) if ref else "-",
                    f"{summary.p50_ms:.2f}",
                    f"{summary.p99_ms:.2f}",
                    str(summary.errors),
                ]
            )
            if ref and target != ORM_REFERENCE:
                cost = summary.server_us / ref.server_us
                met = "met" if cost <= ORM_GOAL else "**not met**"
                verdicts.append(f"{request}, {target}: {cost:.2f}x the reference's CPU per request ({met})")
    header = ["request", "target", "server CPU µs/req", "CPU vs reference", "ok/s", "ok/s vs reference"]
    header += ["p50 ms", "p99 ms", "errors"]
    return [
        "## The ORM path: POST /items and GET /items",
        "",
        f"wrk at {m.plan.headline} connections, {m.plan.rounds} rounds, medians. `fastapi_orm` is"
        " `benchmarks/fastapi_orm_app.py`, what the FastAPI and SQLAlchemy docs lead to: an AsyncSession per"
        " request from a dependency, the same model and pool size, no middleware, no admission and no access log."
        f" Goal: each variant at most {ORM_GOAL:g}x its server CPU per request.",
        "",
        *table(header, rows),
        "",
        *(f"- {verdict}" for verdict in verdicts),
        "",
    ]


def threadpool_section(m: Any) -> list[str]:
    if not m.threadpool:
        return []
    out = [
        "## The threadpool experiment",
        "",
        f"One worker (WEB_CONCURRENCY=1, BENCH_ENDPOINTS=true); N concurrent requests to an endpoint that sleeps"
        f" {m.plan.sleep:g} s: `time.sleep` in a `def` handler (AnyIO's thread pool), `asyncio.sleep` in an"
        " `async def` one. Total seconds for all N answers.",
        "",
    ]
    rows = []
    concurrencies = sorted({level.concurrency for levels, _ in m.threadpool.values() for level in levels})
    header = ["concurrent requests"]
    columns = []
    for variant, (levels, capacity) in m.threadpool.items():
        for handler in dict.fromkeys(level.handler for level in levels):
            header.append(f"{variant}: `{handler}` ({capacity.thread_limit} threads)")
            columns.append({level.concurrency: level for level in levels if level.handler == handler})
    for concurrency in concurrencies:
        row = [str(concurrency)]
        for column in columns:
            level = column.get(concurrency)
            row.append(f"{level.total:.2f} s" + (f" ({level.failed} failed)" if level.failed else "") if level else "")
        rows.append(row)
    out += [*table(header, rows), ""]
    hop_rows = []
    for variant, hop in m.thread_hop.items():
        for kind, summary in hop.items():
            hop_rows.append(
                [
                    variant,
                    "`def` (thread pool)" if kind == "sync" else "`async def`",
                    f"{summary.ok_rps:,.0f}",
                    f"{summary.p99_ms:.2f}",
                    f"{summary.server_us:,.0f}",
                ]
            )
    if hop_rows:
        out += [
            f"The same endpoints sleeping 0 s, with wrk at {m.plan.headline} connections: the cost of running a"
            " handler in the thread pool rather than on the event loop.",
            "",
            *table(["variant", "handler", "req/s", "p99 ms", "server CPU µs/req"], hop_rows),
            "",
        ]
    return out


def ablation_section(m: Any) -> list[str]:
    if not m.ablations:
        return []
    rows_by: dict[str, Any] = m.ablations
    order = [step for step in STEP_TEXT if step in rows_by]
    ladder = ("orm", "idle_ping", "autocommit", "core", "preserialised")
    rows, previous = [], None
    for step in order:
        summary = rows_by[step]
        change = ""
        if previous is not None and step in ladder[1:]:
            change = f"{summary.server_us - previous:+,.0f} µs"
        if step in ("driver_fetch", "fastapi_asyncpg", "asyncio_h11", "no_access_log") and "async" in rows_by:
            change = f"{summary.server_us - rows_by['async'].server_us:+,.0f} µs vs generated"
        rows.append(
            [
                STEP_TEXT[step],
                f"{summary.ok_rps:,.0f} ({summary.rps_low:,.0f}-{summary.rps_high:,.0f})",
                f"{summary.p50_ms:.2f}",
                f"{summary.p99_ms:.2f}",
                f"{summary.server_us:,.0f}",
                f"{summary.connections_per_1000:,.1f}",
                change,
            ]
        )
        if step in ladder:
            previous = summary.server_us
    header = ["path", "req/s (slowest-fastest)", "p50 ms", "p99 ms", "server CPU µs/req", "new connections /1000"]
    header += ["change"]
    return [
        "## What each choice costs",
        "",
        f"GET /items/{{id}} at {m.plan.ablation_level} connections (within each worker's pool, so that overflow"
        " connections do not come and go; see the pool overflow note), every path served at once and measured in turn,"
        f" {m.plan.rounds} rounds, medians (`benchmarks/ablations.py` puts each handler in front of the generated"
        " app, so middleware, admission, settings and pool are the service's own). The first rows go from the"
        " path as first generated to the path as generated now, one change per row; server CPU per request is"
        " the steadiest measure on a shared machine.",
        "",
        *table(header, rows),
        "",
        *reading(m, rows_by),
    ]


def reading(m: Any, rows: dict[str, Any]) -> list[str]:
    def cpu(step: str) -> float:
        return float(rows[step].server_us)

    out = [
        "What the rows say, in this run's numbers (a difference smaller than the spread between rounds, the"
        " req/s ranges above, is noise on a shared machine):",
        "",
    ]
    if {"orm", "idle_ping"} <= rows.keys():
        out.append(
            f"- **Pool pre-ping**: pinging only idle connections instead of at every checkout changed the server"
            f" CPU per request by {cpu('idle_ping') - cpu('orm'):+,.0f} µs"
            f" ({100 * (cpu('idle_ping') / cpu('orm') - 1):+.0f} % of the first path): with asyncpg, SQLAlchemy"
            " pings inside a transaction of its own, three round trips per checkout. The service now pings only"
            " connections that sat idle for 2 s (`idle_ping.py`): a connection used a moment ago is"
            " alive, and one that died anyway fails its query, makes SQLAlchemy drop the pool's older"
            " connections, and is answered 503 with Retry-After."
        )
    if {"idle_ping", "autocommit"} <= rows.keys():
        out.append(
            f"- **Session and transaction**: an autocommit connection instead of a session's transaction changed it"
            f" by {cpu('autocommit') - cpu('idle_ping'):+,.0f} µs (BEGIN and ROLLBACK are two round trips fewer);"
            " writes keep their transactions (`SessionDep`), single reads use `ReadConnectionDep`."
        )
    if {"autocommit", "core"} <= rows.keys():
        out.append(
            f"- **ORM vs Core**: a Core SELECT of four columns instead of `session.get` changed the cost by"
            f" {cpu('core') - cpu('autocommit'):+,.0f} µs (no identity map, no instance, no session)."
        )
    if {"core", "preserialised"} <= rows.keys():
        out.append(
            f"- **JSON**: making the JSON once with pydantic and returning a Response, instead of returning the"
            f" model for FastAPI to validate against response_model and serialise, changed it by"
            f" {cpu('preserialised') - cpu('core'):+,.0f} µs; response_model stays for the documentation."
        )
    if {"async", "asyncio_h11"} <= rows.keys():
        out.append(
            f"- **uvloop and httptools**: uvicorn-worker asks uvicorn for `loop=auto, http=auto`, which picks them"
            f" when installed (uvicorn[standard] installs both; the workers' memory maps above show them loaded)."
            f" Running on asyncio's loop and h11 instead changed the server CPU per request by"
            f" {cpu('asyncio_h11') - cpu('async'):+,.0f} µs."
        )
    if {"async", "no_access_log"} <= rows.keys():
        out.append(
            f"- **Access log**: turning the service's access line off (one JSON line per request) changed it by"
            f" {cpu('no_access_log') - cpu('async'):+,.0f} µs; it stays on, as operators need it."
        )
    if {"async", "driver_fetch"} <= rows.keys():
        out.append(
            f"- **SQLAlchemy's execution layer**: running the statement with asyncpg itself on the connection"
            f" SQLAlchemy's pool checked out, instead of `connection.execute` on a Core statement, changed the"
            f" cost by {cpu('driver_fetch') - cpu('async'):+,.0f} µs. The template keeps Core: one way to"
            " write every query, compiled and typed from the models, and the same code for both drivers."
        )
    if {"async", "baseline", "no_database", "raw_no_database"} <= rows.keys():
        framework = cpu("no_database") - cpu("raw_no_database")
        database_generated = cpu("async") - cpu("no_database")
        database_baseline = cpu("baseline") - cpu("raw_no_database")
        out.append(
            f"- **Where the rest goes**: of the {cpu('async') - cpu('baseline'):,.0f} µs the async variant spends"
            f" per request beyond the baseline, {framework:,.0f} µs is FastAPI itself with no database at all"
            f" (routing, middleware, dependency injection, validation: the FastAPI floor against the raw floor),"
            f" and {database_generated - database_baseline:,.0f} µs is the database path (SQLAlchemy's async"
            f" engine, pool checkout through greenlets, admission and the connection dependency:"
            f" {database_generated:,.0f} µs against asyncpg's {database_baseline:,.0f} µs in the baseline)."
        )
    if {"fastapi_asyncpg", "baseline"} <= rows.keys():
        bound = rows["fastapi_asyncpg"].ok_rps / rows["baseline"].ok_rps
        out.append(
            f"- **The bound for any FastAPI route**: the same app with the route on a raw asyncpg pool, no"
            f" SQLAlchemy at all, spends {cpu('fastapi_asyncpg'):,.0f} µs per request against the baseline's"
            f" {cpu('baseline'):,.0f} and serves {bound:.2f}x its throughput. On this machine, where the server's"
            " core is the bottleneck, FastAPI's own per-request work sets the ceiling, not the database code"
            + (
                f": the async variant's {rows['async'].ok_rps / rows['baseline'].ok_rps:.2f}x is"
                f" {rows['async'].ok_rps / rows['fastapi_asyncpg'].ok_rps:.2f}x of what FastAPI allows."
                if "async" in rows
                else "."
            )
        )
    out += pool_overflow(m)
    if "sync" in m.items and REFERENCE in m.items:
        out.append(sync_gap(m))
    return [*out, ""]


def sync_gap(m: Any) -> str:
    """The sync variant against the baseline, and why, with this run's numbers."""
    head = m.plan.headline
    sync = {summary.concurrency: summary for summary in m.items["sync"]}
    base = {summary.concurrency: summary for summary in m.items[REFERENCE]}
    levels = [c for c in sorted(sync) if c in base]
    ratios = " / ".join(f"{sync[c].ok_rps / base[c].ok_rps:.2f}x" for c in levels)
    text = (
        f"- **The sync variant** reaches {ratios} the plain FastAPI app's throughput at {' / '.join(map(str, levels))}"
        f" connections (server CPU {sync[head].server_us:,.0f} µs per request at {head} against its"
        f" {base[head].server_us:,.0f}). Its GET takes the async variant's path (a Core SELECT on an"
        " autocommit connection, pings only for idle connections, the JSON made once), so what separates the two"
        " is the concurrency model: the sync variant's `def` handler and `def` connection dependency run in"
        " AnyIO's thread pool, a hand-off from the event loop to a thread and back for each, and psycopg's"
        " blocking calls hold that thread for every round trip, with the GIL shared between the threads and the"
        " event loop."
    )
    hop = m.thread_hop.get("sync", {})
    if {"sync", "async"} <= hop.keys():
        text += (
            f" The hand-off alone, measured with the sleeping endpoints at 0 s, cost"
            f" {hop['sync'].server_us - hop['async'].server_us:+,.0f} µs of server CPU per request"
            f" ({hop['sync'].server_us:,.0f} for `def` against {hop['async'].server_us:,.0f} for `async def`)."
        )
    return text + (
        " Its thread limit (admission limit + spare threads) also caps how many requests a worker serves at once:"
        " the threadpool table shows the steps."
    )


def pool_overflow(m: Any) -> list[str]:
    """What SQLAlchemy's overflow connections cost, if the run saw them churn."""
    by = {target: {summary.concurrency: summary for summary in levels} for target, levels in m.items.items()}
    if "async" not in by or REFERENCE not in by or m.plan.headline not in by["async"]:
        return []
    head = m.plan.headline
    churn = by["async"][head].connections_per_1000
    calm = [level for level, summary in by["async"].items() if level < head and summary.connections_per_1000 < 1]
    low = max(calm, default=min(by["async"]))
    if churn < 1:
        return []
    return [
        f"- **Pool overflow**: at {head} connections the async variant opened {churn:,.1f} new database"
        f" connections per 1000 requests, the plain FastAPI app {by[REFERENCE][head].connections_per_1000:,.1f}."
        " SQLAlchemy's QueuePool closes an overflow connection as soon as it comes back while DB_POOL_SIZE"
        " connections sit idle, and opens a new one at the next burst: a worker whose database concurrency"
        " hovers around DB_POOL_SIZE pays a connection setup (PostgreSQL forks a backend, asyncpg"
        " authenticates and sets up its codecs) on a share of its requests, while asyncpg's own pool keeps its"
        " connections."
        + (
            f" At {low} connections the async variant spent {by['async'][low].server_us:,.0f} µs of server CPU"
            f" and {by['async'][low].postgres_us:,.0f} µs of PostgreSQL CPU per request; at {head},"
            f" {by['async'][head].server_us:,.0f} and {by['async'][head].postgres_us:,.0f}."
            if low != head
            else ""
        )
        + " A DB_POOL_SIZE that"
        " covers the usual concurrency (the plan already budgets DB_POOL_SIZE + DB_MAX_OVERFLOW per worker)"
        " avoids it, hence the default answers: 10 connections per worker and no overflow."
    ]


def commands_section(m: Any) -> list[str]:
    plan = m.plan
    out = [
        "## How it was run",
        "",
        f"- this report: `{m.command}` from the repository root (`--quick` for a smoke run; `--output PATH`)",
        f"- load, per level: `taskset -c {plan.load_cpu} wrk -t1 -c<N> -d{plan.duration:g}s --timeout 10s"
        " -s items.lua <url>`, the Lua script of `template/bench/load.py` spreading requests over the item ids",
        f"- knee and overload: `template/bench/knee.py` (`find_knee`) and `template/bench/overload.py`"
        f" (`run_open_loop`), in the benchmark's process on CPU {plan.load_cpu}",
        "- threadpool: `template/bench/threadpool.py` (`run_threadpool`); in a generated project all three are"
        " `python -m bench`",
    ]
    out += [f"- {target}: `{command}`" for target, command in m.commands.items()]
    if "ablation no_access_log" in m.commands:
        out.append("- (gunicorn-no-access-log.conf.py: the project's gunicorn.conf.py, then `accesslog = None`)")
    return [*out, ""]
