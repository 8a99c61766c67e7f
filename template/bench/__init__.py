"""Load tests for a running service, with a Markdown table and a PNG chart of the results.

    python -m bench --url http://127.0.0.1:8000

Three experiments, each optional (`--only`):

- threadpool: 2 s sleeping endpoints (`time.sleep` in a `def` handler, `asyncio.sleep` in an
  `async def` one) at 20, 40, 80 and 120 concurrent requests. They exist only when the
  service runs with BENCH_ENDPOINTS=true.
- items: GET /items/{id} at rising concurrency, with wrk: throughput, p50 and p99.
- overload: an open-loop sender at a fixed rate with 10x the admission limit of connections:
  the share of 200 and 503 answers and the latency of each.

Needs the `bench` extra (`pip install -e '.[bench]'`) and wrk (`apt-get install wrk`).
"""
