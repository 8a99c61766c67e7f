"""The template's benchmarks: `uv run python -m benchmarks` writes BENCHMARKS.md.

It generates the async and sync variants with copier (tests/generation.py), installs each
into its own virtual environment with uv, starts one throwaway PostgreSQL
(template/tests/postgres_server.py), and serves each variant and a raw baseline
(baseline_app.py: bare ASGI + asyncpg) in turn with gunicorn, pinned to one core, while the
load (the generated project's own bench/ code, and wrk) runs pinned to the other. Then the
ablations (ablations.py) measure what each choice on the async variant's hot path costs.
"""
