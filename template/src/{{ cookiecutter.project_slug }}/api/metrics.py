"""GET /metrics: the instance's metrics in Prometheus' text format, for its scraper.

Not a database route: the admission gate never refuses it, and it answers on the event loop
(no thread). Under gunicorn it reads every worker's files in PROMETHEUS_MULTIPROC_DIR (memory
under /dev/shm), so whichever worker answers reports the same totals; see metrics.py.
"""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    collected = request.app.state.metrics_registry  # made once, by create_app
    return Response(generate_latest(collected), media_type=CONTENT_TYPE_LATEST)
