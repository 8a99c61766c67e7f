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

from .load import require_wrk, run_load
from .machine import describe_machine, discover_capacity
from .overload import run_overload
from .report import Results, chart, markdown
from .threadpool import endpoints_enabled, run_threadpool

PARTS = ("threadpool", "items", "overload")
STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


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
    group.add_argument("--levels", type=integers, default=[1, 4, 16, 64], help="connections")
    group.add_argument("--duration", type=float, default=10, help="seconds per level")
    group.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    group.add_argument("--item-ids", metavar="FIRST-LAST", help="ids to read (default: listed)")
    group.add_argument("--seed", type=int, default=100, help="items to create if there are none")
    group = parser.add_argument_group("overload")
    group.add_argument("--rate", type=float, help="requests/s (default: 2x the best measured)")
    group.add_argument("--overload-duration", type=float, default=10)
    group.add_argument("--connections", type=int, help="default: 10x the admission limit")
    group.add_argument("--workers", type=int, help="the service's workers (default: discovered)")
    group.add_argument("--admission-limit", type=int, help="per worker (default: discovered)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sleep, args.sleep_levels = 0.5, [10, 50]
        args.levels, args.duration, args.warmup = [1, 8], 1, 0
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
    capacity = dataclasses.replace(
        capacity,
        workers=args.workers or capacity.workers,
        admission_limit=args.admission_limit or capacity.admission_limit,
    )
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    results = Results(url, command, describe_machine(), capacity)
    progress(f"{url}: {capacity}")

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
        best = max((level.ok_rps for level in results.items), default=0)
        rate = args.rate or (2 * best if best else 1000)
        connections = args.connections or 10 * (capacity.admission_total or 10)
        if not args.connections and capacity.admission_total is None:
            results.notes.append(
                "Overload: the service publishes no admission limit; 100 connections were used."
            )
        seconds = args.overload_duration
        progress(f"overload: {rate:,.0f} req/s for {seconds:g} s over {connections} connections")
        results.overload = run_overload(url, paths, rate, args.overload_duration, connections)
        for status, latency in results.overload.by_status.items():
            progress(
                f"overload: {status}: {100 * latency.share:5.1f} %  p50 {latency.p50_ms:8.1f} ms"
                f"  p99 {latency.p99_ms:8.1f} ms"
            )

    args.out.mkdir(parents=True, exist_ok=True)
    drawn = chart(results, args.out / "bench.png")
    if not drawn:
        results.notes.append("No chart: install the bench extra (matplotlib).")
    (args.out / "bench.md").write_text(markdown(results, "bench.png" if drawn else None))
    (args.out / "bench.json").write_text(json.dumps(dataclasses.asdict(results), indent=2) + "\n")
    progress(f"wrote {args.out / 'bench.md'}" + (f" and {args.out / 'bench.png'}" if drawn else ""))
    return 0


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
