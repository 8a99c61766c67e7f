"""The template's benchmarks: `uv run python -m benchmarks` writes BENCHMARKS.md and its chart,
BENCHMARKS.png.

It generates the async and sync variants with copier (tests/support/), installs each
into its own virtual environment with uv, starts one throwaway PostgreSQL
(template/tests/postgres_server.py), and serves each variant and the reference, a plain
FastAPI app on a raw asyncpg pool with no admission control (fastapi_app.py), side by side
with gunicorn, pinned to one core, while the load (the generated project's own bench/ code,
and wrk) runs pinned to the other: GET /items/{id} at 1, 16, 64 and 256 connections, then
each target's knee and open-loop overload at 2x, 5x and 10x the capacity found there, judged
against the overload targets. Then the ablations (ablations.py, with the bare ASGI baseline
of baseline_app.py) measure what each choice on the async variant's hot path costs.
"""
