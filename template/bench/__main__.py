"""`python -m bench`: load a running service and write bench.md, bench.png and bench.json."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from .knee import find_knee
from .load import require_wrk, run_load
from .machine import Capacity, describe_machine, discover_capacity
from .overload import OK, REFUSED, run_open_loop
from .report import Results, chart, markdown
from .targets import OverloadRun, verdicts
from .threadpool import endpoints_enabled, run_threadpool

PARTS = ("threadpool", "items", "overload")
DEFAULT_BUDGET_MS = 100.0
STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--only", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: a smoke run")
    parser.add_argument("--pin-load", type=int, metavar="CPU", help="run the load on this CPU")
    group = parser.add_argument_group("threadpool (needs BENCH_ENDPOINTS=true on the service)")
    group.add_argument("--sleep", type=float, default=2.0, help="seconds each request sleeps")
    group.add_argument("--sleep-levels", type=integers, default=[20, 40, 80, 120])
    group = parser.add_argument_group("items")
    group.add_argument("--levels", type=integers, default=[1, 16, 64, 256], help="connections")
    group.add_argument("--duration", type=float, default=10, help="seconds per level")
    group.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    group.add_argument("--item-ids", metavar="FIRST-LAST", help="ids to read (default: listed)")
    group.add_argument("--seed", type=int, default=100, help="items to create if there are none")
    group = parser.add_argument_group("overload: the knee, then multiples of its capacity")
    group.add_argument(
        "--budget-ms",
        type=float,
        help="the queue budget (default: GET /capacity's admission.queue_budget_ms,"
        f" else {DEFAULT_BUDGET_MS:g})",
    )
    group.add_argument("--connections", type=int, default=256, help="of the open-loop sender")
    group.add_argument(
        "--knee-start",
        type=float,
        help="first offered req/s (default: a quarter of the best items ok/s, else 50)",
    )
    group.add_argument("--knee-factor", type=float, default=1.4, help="rate growth per step")
    group.add_argument("--knee-step", type=float, default=3, help="seconds per step")
    group.add_argument("--knee-steps", type=int, default=15, help="at most this many steps")
    group.add_argument("--multiples", type=numbers, default=[2.0, 5.0, 10.0], help="of capacity")
    group.add_argument("--overload-duration", type=float, default=30, help="seconds per multiple")
    group.add_argument("--workers", type=int, help="the service's workers (default: discovered)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sleep, args.sleep_levels = 0.5, [10, 50]
        args.levels, args.duration, args.warmup = [1, 16], 1, 0
        args.knee_step, args.knee_steps, args.knee_factor = 1, 3, 2
        args.overload_duration = 1
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    if unknown := set(args.only) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.url.rstrip("/")
    if args.pin_load is not None:
        os.sched_setaffinity(0, {args.pin_load})
    if "items" in args.only or "overload" in args.only:
        require_wrk()
    capacity = discover_capacity(url)
    capacity = dataclasses.replace(capacity, workers=args.workers or capacity.workers)
    budget, budget_source = queue_budget(args.budget_ms, capacity)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    results = Results(url, command, describe_machine(), capacity, budget, budget_source)
    progress(f"{url}: {capacity}; queue budget {budget:g} ms ({budget_source})")

    if "threadpool" in args.only:
        if endpoints_enabled(url):
            results.threadpool = run_threadpool(url, args.sleep_levels, args.sleep, progress)
        else:
            results.notes.append(
                "Threadpool: skipped; start the service with BENCH_ENDPOINTS=true."
            )
            progress("threadpool: skipped, the service has no /bench endpoints")
    reads = {"items", "overload"} & set(args.only)
    paths = [f"/items/{item}" for item in item_ids(url, args)] if reads else []
    if "items" in args.only:
        results.items = run_load(
            url, paths, args.levels, args.duration, args.warmup, args.pin_load, progress
        )
    if "overload" in args.only:
        overload(results, url, paths, args)

    args.out.mkdir(parents=True, exist_ok=True)
    drawn = chart(results, args.out / "bench.png")
    if not drawn:
        results.notes.append("No chart: install the bench extra (matplotlib).")
    (args.out / "bench.md").write_text(markdown(results, "bench.png" if drawn else None))
    (args.out / "bench.json").write_text(json.dumps(dataclasses.asdict(results), indent=2) + "\n")
    progress(f"wrote {args.out / 'bench.md'}" + (f" and {args.out / 'bench.png'}" if drawn else ""))
    return 0


def queue_budget(option: float | None, capacity: Capacity) -> tuple[float, str]:
    if option is not None:
        return option, "--budget-ms"
    if capacity.queue_budget_ms is not None:
        return capacity.queue_budget_ms, "GET /capacity"
    return DEFAULT_BUDGET_MS, "the default; GET /capacity publishes none"


def overload(results: Results, url: str, paths: list[str], args: argparse.Namespace) -> None:
    """The knee, then open-loop overload at multiples of the capacity measured there."""
    best = max((level.ok_rps for level in results.items), default=0)
    # From a quarter of the best closed-loop throughput, the knee is a few steps away.
    start = args.knee_start or (best / 4 if best else 50)
    progress(f"knee: from {start:,.0f} req/s, x{args.knee_factor:g} per {args.knee_step:g} s step")
    search = find_knee(
        url,
        paths,
        results.budget_ms,
        start,
        args.knee_factor,
        args.knee_step,
        args.connections,
        args.knee_steps,
        progress,
    )
    results.knee = search
    if search.knee is None:
        results.notes.append(
            f"Overload: not run; even {start:,.0f} req/s was beyond the budget (--knee-start)."
        )
        return
    for multiple in args.multiples:
        rate = multiple * search.capacity
        progress(f"overload: {multiple:g}x = {rate:,.0f} req/s for {args.overload_duration:g} s")
        result = run_open_loop(
            url, paths, rate, args.overload_duration, args.connections, probe_path="/healthz"
        )
        results.overload.append(OverloadRun(multiple, result))
        ok, refused = result.latency(OK), result.latency(REFUSED)
        progress(
            f"overload: {multiple:g}x ok {result.ok_rps:,.0f}/s"
            f"  503 {100 * result.refused_share:.1f} %"
            + (f"  200 p99 {ok.p99_ms:,.1f} ms" if ok else "")
            + (f"  503 p99 {refused.service_p99_ms:,.1f} ms" if refused else "")
            + (f"  /healthz p99 {result.probe.p99_ms:,.1f} ms" if result.probe else "")
        )
        if result.sent_rate < 0.95 * rate:
            results.notes.append(
                f"Overload {multiple:g}x: the sender managed {result.sent_rate:,.0f} of"
                f" {rate:,.0f} req/s (its connections all waited, or its core was full)."
            )
    results.verdicts = verdicts(search, results.overload)


def item_ids(url: str, args: argparse.Namespace) -> list[int]:
    """The ids to read: --item-ids, else up to 100 listed by the service, else new ones."""
    if args.item_ids:
        first, _, last = args.item_ids.partition("-")
        return list(range(int(first), int(last or first) + 1))
    listed = _request(f"{url}/items?limit=100")
    if listed:
        return [item["id"] for item in listed]
    progress(f"items: none listed, creating {args.seed}")
    return [_request(f"{url}/items", {"name": f"bench {n}"})["id"] for n in range(args.seed)]


def _request(url: str, body: dict[str, str] | None = None) -> Any:  # noqa: ANN401 (JSON)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


if __name__ == "__main__":
    raise SystemExit(main())
