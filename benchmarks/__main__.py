"""`uv run python -m benchmarks`: measure the generated variants against a raw baseline.

Writes BENCHMARKS.md (or --output). See __init__.py for what runs; --quick is a smoke run of
a few seconds per part, for CI.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import profile, services
from benchmarks.machine import Meter, Usage, children
from benchmarks.report import write_report
from tests.support.answers import DRIVERS, REPO, default_answers
from tests.support.generation import template_module
from tests.support.services import Project, service_env
from tests.support.services import run as run_command

STARTED = time.monotonic()
# The apps a user would write instead (benchmarks/*_app.py), by target name.
REFERENCES = {
    "fastapi": "fastapi_app:app",
    "fastapi_logged": "fastapi_app:app",
    "fastapi_orm": "fastapi_orm_app:app",
    "baseline": "baseline_app:app",
    "raw_no_database": "baseline_app:app",
}
# The ORM session path every user route copies: (method, path, JSON body).
ORM_REQUESTS = {
    "POST /items": ("POST", "/items", '{"name": "bench item", "description": "sent by wrk"}'),
    "GET /items": ("GET", "/items?limit=20", None),
}


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def load_bench() -> ModuleType:
    """template/bench, the generated project's load code, imported as a package by path."""
    folder = REPO / "template" / "bench"
    name = "headroom_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    for part in ("load", "overload", "knee", "targets", "report", "threadpool", "machine"):
        importlib.import_module(f"{name}.{part}")
    return sys.modules[name]


@dataclass
class Plan:
    """What one run measures, and for how long."""

    variants: list[str]
    levels: list[int]
    headline: int  # the concurrency the goal is checked at
    ablation_level: int  # the concurrency of the ablations: within each worker's pool, so no overflow churn
    rounds: int  # each measurement is repeated, targets taking turns, and the median kept
    duration: float
    warmup: float
    knee_step: float  # seconds per step of the knee search
    knee_steps: int  # at most
    knee_factor: float  # offered rate growth per step
    overload_duration: float  # seconds at each multiple of the knee's capacity
    profile_seconds: float  # py-spy's sampling of one worker, per target
    multiples: list[float]
    request_timeout: float  # seconds before an open-loop request counts as an error
    settle: float  # seconds between open-loop runs, for the last one's requests to finish
    sleep: float
    sleep_levels: list[int]
    ablations: list[str]
    server_cpu: int
    load_cpu: int
    items: int = 1000
    connections: int = 256  # of the open-loop sender: many more than any target answers at once
    budget_ms: float | None = None  # the queue budget: --budget-ms, else the async variant's /capacity


FULL = {
    "levels": [1, 16, 64, 256],
    "headline": 16,
    "ablation_level": 4,
    "rounds": 3,
    "duration": 3.0,
    "warmup": 1.0,
    "knee_step": 3.0,
    "knee_steps": 15,
    "knee_factor": 1.4,
    "overload_duration": 30.0,
    "profile_seconds": 8.0,
    "multiples": [2.0, 5.0, 10.0],
    "request_timeout": 10.0,
    "settle": 1.0,
    "sleep": 2.0,
    "sleep_levels": [20, 40, 80, 120],
}
QUICK = {
    "levels": [1, 16],
    "headline": 16,
    "ablation_level": 4,
    "rounds": 1,
    "duration": 1.0,
    "warmup": 0.0,
    "knee_step": 1.0,
    "knee_steps": 3,
    "knee_factor": 2.0,
    "overload_duration": 1.0,
    "profile_seconds": 2.0,
    "multiples": [2.0, 5.0, 10.0],
    "request_timeout": 2.0,
    "settle": 0.1,
    "sleep": 0.2,
    "sleep_levels": [5, 50],
}
ABLATIONS = [
    "orm",
    "idle_ping",
    "autocommit",
    "core",
    "preserialised",
    "driver_fetch",
    "fastapi_asyncpg",
    "asyncio_h11",
    "no_access_log",
    "no_database",
    "raw_no_database",
]


@dataclass
class Summary:
    """One target at one concurrency: the median of its rounds."""

    concurrency: int
    ok_rps: float
    rps_low: float  # the slowest and fastest round
    rps_high: float
    p50_ms: float
    p99_ms: float
    refused_share: float  # 503 answers, all rounds
    errors: int  # other non-2xx answers and socket errors, all rounds
    server_us: float  # server CPU per request
    postgres_us: float
    connections_per_1000: float  # new database connections per 1000 requests

    @classmethod
    def of(cls, rounds: list[tuple[Any, Usage]]) -> Summary:
        def per_request(seconds: float, level: Any) -> float:
            return 1e6 * seconds / level.requests if level.requests else float("nan")

        rps = [level.ok_rps for level, _ in rounds]
        return cls(
            concurrency=rounds[0][0].concurrency,
            ok_rps=statistics.median(rps),
            rps_low=min(rps),
            rps_high=max(rps),
            p50_ms=statistics.median(level.p50_ms for level, _ in rounds),
            p99_ms=statistics.median(level.p99_ms for level, _ in rounds),
            refused_share=sum(level.refused for level, _ in rounds) / max(1, sum(lv.requests for lv, _ in rounds)),
            errors=sum(level.non_2xx - level.refused + level.socket_errors for level, _ in rounds),
            server_us=statistics.median(per_request(usage.server, level) for level, usage in rounds),
            postgres_us=statistics.median(per_request(usage.postgres, level) for level, usage in rounds),
            connections_per_1000=statistics.median(
                1000 * usage.connections / level.requests if level.requests else 0.0 for level, usage in rounds
            ),
        )


@dataclass
class Measured:
    """Everything one run found, for the report."""

    plan: Plan
    command: str
    machine: dict[str, str]
    versions: dict[str, str]
    postgres: str
    commands: dict[str, str] = field(default_factory=dict)
    items: dict[str, list[Summary]] = field(default_factory=dict)  # target -> one per level
    overload: dict[str, TargetOverload] = field(default_factory=dict)
    threadpool: dict[str, tuple[list[Any], Any]] = field(default_factory=dict)
    thread_hop: dict[str, dict[str, Summary]] = field(default_factory=dict)
    ablations: dict[str, Summary] = field(default_factory=dict)
    orm: dict[str, dict[str, Summary]] = field(default_factory=dict)  # request -> target -> summary
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # target -> component -> share
    libraries: dict[str, set[str]] = field(default_factory=dict)
    usages: list[Usage] = field(default_factory=list)  # every measurement, for the host's load
    budget_ms: float = 100.0
    budget_source: str = ""
    chart: str | None = None  # the PNG's file name, beside the report


@dataclass
class TargetOverload:
    """One target's knee search and overload runs, with the server CPU each run used."""

    knee: Any  # bench.knee.KneeSearch
    runs: list[Any] = field(default_factory=list)  # bench.targets.OverloadRun
    usages: list[Usage] = field(default_factory=list)  # one per run
    verdicts: list[Any] = field(default_factory=list)  # bench.targets.Verdict
    served_us: float = float("nan")  # server CPU per 200 answer (wrk, headline connections)
    refusal_us: float = float("nan")  # server CPU per 503 answer, fitted over the overload runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds per part")
    parser.add_argument("--variants", default=",".join(DRIVERS), help="which generated variants to measure")
    parser.add_argument("--ablations", help=f"comma-separated, from {','.join(ABLATIONS)} (quick: none)")
    parser.add_argument("--server-cpu", type=int, default=1, help="the CPU gunicorn runs on")
    parser.add_argument("--load-cpu", type=int, default=0, help="the CPU wrk, the sender and PostgreSQL run on")
    parser.add_argument(
        "--budget-ms", type=float, help="the queue budget (default: the async variant's GET /capacity, else 100)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = QUICK if args.quick else FULL
    chosen = args.ablations if args.ablations is not None else ("" if args.quick else ",".join(ABLATIONS))
    plan = Plan(
        variants=[variant for variant in args.variants.split(",") if variant],
        ablations=[step for step in chosen.split(",") if step],
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        budget_ms=args.budget_ms,
        **shape,  # type: ignore[arg-type]
    )
    if unknown := set(plan.ablations) - set(ABLATIONS):
        raise SystemExit(f"unknown ablations {sorted(unknown)}; choose from {','.join(ABLATIONS)}")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run(plan, args, args.workdir)
    with tempfile.TemporaryDirectory(prefix="headroom-benchmarks-") as scratch:
        return run(plan, args, Path(scratch))


def run(plan: Plan, args: argparse.Namespace, workdir: Path) -> int:
    cpus = sorted(os.sched_getaffinity(0))
    if plan.server_cpu not in cpus or plan.load_cpu not in cpus or len(cpus) < 2:
        plan.server_cpu, plan.load_cpu = cpus[-1], cpus[0]
        progress(f"CPUs available: {cpus}; the server runs on {plan.server_cpu}, the load on {plan.load_cpu}")
    os.sched_setaffinity(0, {plan.load_cpu})  # this process, wrk, and PostgreSQL (started below)
    bench = load_bench()
    postgres_server = template_module("tests/postgres_server.py")
    needed = sorted({"async", *plan.variants})  # the baseline runs in the async variant's environment
    projects = {}
    for driver in needed:
        progress(f"generating and installing the {driver} variant")
        projects[driver] = services.build(driver, workdir)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    # Up to 13 services at once, 2 workers each, up to 10 connections per worker.
    with postgres_server.throwaway_postgres(max_connections=300) as pg:
        postmaster = _postmaster(pg.port)
        for pid in [postmaster, *children(postmaster)]:
            os.sched_setaffinity(pid, {plan.load_cpu})
        url = pg.create_database("bench")
        migrate = [projects["async"].bin("alembic"), "upgrade", "head"]
        run_command(migrate, projects["async"].path, service_env(DATABASE_URL=url))
        pg.sql(
            "INSERT INTO items (name, description) SELECT 'item ' || n, 'a description of item ' || n"
            f" FROM generate_series(1, {plan.items}) AS n",
            "bench",
        )
        measured = Measured(
            plan=plan,
            command=shlex.join(["uv", "run", "python", "-m", "benchmarks", *sys.argv[1:]]),
            machine=bench.machine.describe_machine(),
            versions=_versions(projects),
            postgres=pg.sql("SHOW server_version"),
        )
        measured.machine["Python"] = f"{platform.python_implementation()} {platform.python_version()}"
        context = Context(plan, bench, projects, url, postmaster, logs, workdir, measured)
        context.sessions = lambda: int(pg.sql("SELECT sessions FROM pg_stat_database WHERE datname = 'bench'"))
        context.measure_targets(["fastapi", "fastapi_logged", *plan.variants])
        context.measure_orm(plan.variants)
        context.measure_threadpool(plan.variants)
        if plan.ablations:
            context.measure_ablations(plan.ablations)
    measured.chart = _chart(bench, measured, args.output.with_suffix(".png"))
    write_report(measured, args.output)
    progress(f"wrote {args.output}")
    return 0


def _chart(bench: ModuleType, measured: Measured, path: Path) -> str | None:
    """Goodput and latency against offered load, one line per target (beside the report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {
        target: bench.report.offered_load_curves(found.knee, found.runs) for target, found in measured.overload.items()
    }
    if not curves:
        return None
    figure, (goodput, latency) = plt.subplots(1, 2, figsize=(13, 5))
    bench.report.draw_offered_load(goodput, latency, curves, measured.budget_ms)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path.name


def _postmaster(port: int) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command and command[0].endswith(b"/postgres") and f"-cport={port}".encode() in command:
                return int(proc.name)
    raise RuntimeError(f"no postmaster found for port {port}")


def _versions(projects: dict[str, Project]) -> dict[str, str]:
    script = (
        "import importlib.metadata as m\n"
        "for n in ('fastapi','starlette','pydantic','sqlalchemy','asyncpg','psycopg','uvicorn','uvicorn-worker',"
        "'gunicorn','uvloop','httptools','anyio'):\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: pass\n"
    )
    found: dict[str, str] = {}
    for project in projects.values():
        for line in run_command([project.bin("python"), "-c", script], project.path).splitlines():
            name, version = line.split()
            found[name] = version
    return found


@dataclass
class Context:
    plan: Plan
    bench: ModuleType
    projects: dict[str, Project]
    database_url: str
    postmaster: int
    logs: Path
    workdir: Path
    measured: Measured
    sessions: Any = None  # () -> connections the database has accepted so far
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.paths = [f"/items/{item}" for item in range(1, self.plan.items + 1)]

    def server(self, target: str, label: str = "", **extra: str) -> Any:
        """gunicorn for a target: 'baseline', a variant, or an ablation step."""
        # Workers are not recycled mid-measurement (MAX_REQUESTS): a restart is not what is measured.
        env = service_env(DATABASE_URL=self.database_url, MAX_REQUESTS="0", **extra)
        cwd = None
        if target in REFERENCES:
            project = self.projects["async"]
            answers = default_answers()
            env |= {"PYTHONPATH": str(services.HERE), "WEB_CONCURRENCY": "2"}
            env |= {"DB_POOL_SIZE": str(answers["pool_size"]), "DB_MAX_OVERFLOW": str(answers["max_overflow"])}
            if target == "raw_no_database":
                env["BASELINE_NO_DATABASE"] = "1"
            # Served like the services: the same worker class, workers and keep-alive. The bound
            # (fastapi) writes no access line, from a folder without the service's gunicorn.conf.py;
            # fastapi_logged adds only an access line per request, in the service's JSON logging
            # (its gunicorn.conf.py's logconfig_dict, with uvicorn's access line turned on).
            args = ["-k", "uvicorn_worker.UvicornWorker", "-w", "2", "--keep-alive", "5"]
            if target == "fastapi_logged":
                args += ["--access-logfile", "-"]
            else:
                cwd = self.workdir / "plain"
                cwd.mkdir(exist_ok=True)
            args.append(REFERENCES[target])
        elif target in self.projects:
            project, args = self.projects[target], ["-c", "gunicorn.conf.py"]
        else:  # an ablation of the async variant
            project = self.projects["async"]
            env |= {"PYTHONPATH": str(services.HERE), "SERVICE_PACKAGE": services.PACKAGE}
            config = "gunicorn.conf.py"
            if target == "no_access_log":
                config = str(services.gunicorn_config_without_access_log(project, self.workdir))
            args = ["-c", config, "ablations:create_app()"]
            if target == "asyncio_h11":
                args += ["--worker-class", "ablations.AsyncioH11Worker"]
            if target not in ("asyncio_h11", "no_access_log"):
                env["ABLATION"] = target
        name = f"{label}{target}".replace(" ", "-")
        return services.serve(name, project, args, env, self.plan.server_cpu, self.logs, cwd)

    def servers(
        self, stack: ExitStack, targets: list[str], label: str = "", **extra: str
    ) -> dict[str, services.Server]:
        """Start gunicorn for every target at once (idle ones cost nothing), so that the
        measurements can take turns and contention on the host spreads over all of them."""
        started = {}
        for target in targets:
            progress(f"starting {target}")
            server = stack.enter_context(self.server(target, label, **extra))
            shown = " ".join([*(f"{key}={value}" for key, value in extra.items()), server.command])
            shown = shown.replace(f"{self.workdir}/", "")  # the temporary folder says nothing
            self.measured.commands.setdefault(f"{label}{target}", shown)
            self.measured.libraries.setdefault(target, services.loaded_libraries(server.pid))
            started[target] = server
        return started

    def take_turns(
        self,
        servers: dict[str, services.Server],
        paths: dict[str, list[str]],
        levels: list[int],
        method: str = "GET",
        body: str | None = None,
    ) -> dict[str, list[Summary]]:
        """wrk against each server in turn, level by level, for plan.rounds rounds."""
        plan = self.plan
        rounds: dict[tuple[str, int], list[tuple[Any, Usage]]] = {}
        if plan.warmup:
            for target, server in servers.items():
                self.bench.load.run_load(
                    server.url, paths[target], [max(levels)], 0, plan.warmup, plan.load_cpu, progress, method, body
                )
        for number in range(1, plan.rounds + 1):
            for level in levels:
                for target, server in servers.items():
                    progress(f"round {number}/{plan.rounds}: {target}")
                    meter = Meter(server.pid, self.postmaster, self.sessions)
                    meter.start()
                    [result] = self.bench.load.run_load(
                        server.url, paths[target], [level], plan.duration, 0, plan.load_cpu, progress, method, body
                    )
                    usage = meter.stop()
                    self.measured.usages.append(usage)
                    rounds.setdefault((target, level), []).append((result, usage))
        return {target: [Summary.of(rounds[target, level]) for level in levels] for target in servers}

    def measure_targets(self, targets: list[str]) -> None:
        with ExitStack() as stack:
            servers = self.servers(stack, targets)
            progress(f"GET /items/{{id}} at {self.plan.levels} connections, {self.plan.rounds} rounds")
            self.measured.items = self.take_turns(servers, dict.fromkeys(servers, self.paths), self.plan.levels)
            for target in ("fastapi", *self.plan.variants):
                self.measure_profile(target, servers[target])
            self.queue_budget(servers)
            for target, server in servers.items():
                if target != "fastapi_logged":  # the same app as fastapi under overload
                    self.measure_overload(target, server)

    def queue_budget(self, servers: dict[str, services.Server]) -> None:
        """The budget every target's knee is judged by: the async variant's, as /capacity says."""
        measured, plan = self.measured, self.plan
        if plan.budget_ms is not None:
            measured.budget_ms, measured.budget_source = plan.budget_ms, "--budget-ms"
            return
        for variant in DRIVERS:
            if variant in servers:
                published = self.bench.machine.discover_capacity(servers[variant].url).queue_budget_ms
                if published is not None:
                    measured.budget_ms = published
                    measured.budget_source = f"the {variant} variant's GET /capacity"
                    return
        measured.budget_ms, measured.budget_source = 100.0, "the default: no variant's GET /capacity publishes one"

    def measure_overload(self, target: str, server: services.Server) -> None:
        """The knee by open-loop steps, then 2x, 5x and 10x its capacity, each run metered."""
        plan, bench = self.plan, self.bench
        summaries = self.measured.items[target]
        start = max(summary.ok_rps for summary in summaries) / 4 or 50
        progress(f"{target}: the knee, from {start:,.0f} req/s")
        search = bench.knee.find_knee(
            server.url, self.paths, self.measured.budget_ms, start, plan.knee_factor, plan.knee_step,
            plan.connections, plan.knee_steps, progress, plan.request_timeout,
        )  # fmt: skip
        found = TargetOverload(search)
        headline = next((summary for summary in summaries if summary.concurrency == plan.headline), summaries[-1])
        found.served_us = headline.server_us
        self.measured.overload[target] = found
        if search.knee is None:
            progress(f"{target}: no step within the budget; no overload runs")
            return
        for multiple in plan.multiples:
            rate = multiple * search.capacity
            progress(f"{target}: {multiple:g}x = {rate:,.0f} req/s open loop for {plan.overload_duration:g} s")
            time.sleep(plan.settle)
            meter = Meter(server.pid, self.postmaster, self.sessions)
            meter.start()
            result = bench.overload.run_open_loop(
                server.url, self.paths, rate, plan.overload_duration, plan.connections, "/healthz", plan.request_timeout
            )
            found.usages.append(meter.stop())
            found.runs.append(bench.targets.OverloadRun(multiple, result))
        found.verdicts = bench.targets.verdicts(search, found.runs)
        found.refusal_us = refusal_cost(found)

    def measure_profile(self, target: str, server: services.Server) -> None:
        """py-spy on one worker while wrk loads the server at the headline concurrency."""
        plan = self.plan
        worker = children(server.pid)[0]
        out = self.logs / f"profile-{target}.txt"
        progress(f"{target}: profiling worker {worker} for {plan.profile_seconds:g} s")
        sampler = profile.record(worker, plan.profile_seconds, out)
        self.bench.load.run_load(
            server.url, self.paths, [plan.headline], plan.profile_seconds + 1, 0, plan.load_cpu, progress
        )
        _, errors = sampler.communicate(timeout=60)
        if sampler.returncode != 0 or not out.is_file():
            raise RuntimeError(f"py-spy failed on {target} ({sampler.returncode}): {errors.decode()}")
        self.measured.profile[target] = profile.shares(out)

    def measure_orm(self, variants: list[str]) -> None:
        """POST /items and GET /items, the ORM session path, against the ORM reference app."""
        with ExitStack() as stack:
            servers = self.servers(stack, ["fastapi_orm", *variants], "orm ")
            for name, (method, path, body) in ORM_REQUESTS.items():
                progress(f"{name} at {self.plan.headline} connections, {self.plan.rounds} rounds")
                found = self.take_turns(
                    servers, {target: [path] for target in servers}, [self.plan.headline], method, body
                )
                self.measured.orm[name] = {target: summary for target, [summary] in found.items()}

    def measure_threadpool(self, variants: list[str]) -> None:
        with ExitStack() as stack:
            extra = {"BENCH_ENDPOINTS": "true", "WEB_CONCURRENCY": "1"}
            servers = self.servers(stack, variants, "threadpool ", **extra)
            for variant, server in servers.items():
                progress(f"{variant}: threadpool experiment, one worker")
                capacity = self.bench.machine.discover_capacity(server.url)
                levels = self.bench.threadpool.run_threadpool(
                    server.url, self.plan.sleep_levels, self.plan.sleep, progress
                )
                self.measured.threadpool[variant] = (levels, capacity)
            hop_servers = {
                f"{variant} {kind}": server for variant, server in servers.items() for kind in ("sync", "async")
            }
            paths = {name: [f"/bench/sleep/{name.split()[1]}?seconds=0"] for name in hop_servers}
            progress(f"sleeping 0 s, def and async def, at {self.plan.headline} connections")
            hop = self.take_turns(hop_servers, paths, [self.plan.headline])
            for name, [summary] in hop.items():
                variant, kind = name.split()
                self.measured.thread_hop.setdefault(variant, {})[kind] = summary

    def measure_ablations(self, steps: list[str]) -> None:
        with ExitStack() as stack:
            servers = self.servers(stack, [*steps, "async", "baseline"], "ablation ")
            level = self.plan.ablation_level
            progress(f"ablations at {level} connections, {self.plan.rounds} rounds")
            found = self.take_turns(servers, dict.fromkeys(servers, self.paths), [level])
            self.measured.ablations = {target: summary for target, [summary] in found.items()}


def refusal_cost(found: TargetOverload) -> float:
    """Server CPU per 503, in µs: the least-squares fit of cpu = a x ok + b x refused over the
    overload runs (the same server at different mixes of answers); NaN if they cannot tell."""
    rows = [
        (run.result.count("200"), run.result.count("503"), usage.server)
        for run, usage in zip(found.runs, found.usages, strict=True)
    ]
    oo = sum(ok * ok for ok, _, _ in rows)
    orr = sum(ok * refused for ok, refused, _ in rows)
    rr = sum(refused * refused for _, refused, _ in rows)
    oc = sum(ok * cpu for ok, _, cpu in rows)
    rc = sum(refused * cpu for _, refused, cpu in rows)
    determinant = oo * rr - orr * orr
    if len(rows) < 2 or not rr or determinant <= 1e-9 * oo * rr:
        return float("nan")
    return 1e6 * (oo * rc - orr * oc) / determinant


if __name__ == "__main__":
    raise SystemExit(main())
