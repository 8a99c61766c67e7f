"""Load tests for a running service, with a Markdown table and a PNG chart of the results.

    python -m bench --url http://127.0.0.1:8000

Three experiments, each optional (`--only`):

- threadpool: 2 s sleeping endpoints (`time.sleep` in a `def` handler, `asyncio.sleep` in an
  `async def` one) at 20, 40, 80 and 120 concurrent requests. They exist only when the
  service runs with BENCH_ENDPOINTS=true.
- items: GET /items/{id} at 1, 16, 64 and 256 connections, with wrk: ok/s, 503 share, p50 and
  p99.
- overload: the knee first (open-loop offered load rising step by step until the p99 of the
  200 answers passes the queue budget, or goodput stops tracking the offered load), then
  open-loop overload at 2x, 5x and 10x the capacity measured there, with /healthz probed on
  a connection of its own; the targets the service promises under overload, met or not.

Needs the `bench` extra (`pip install -e '.[bench]'`) and wrk (`apt-get install wrk`).
"""
