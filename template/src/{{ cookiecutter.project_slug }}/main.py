"""The application factory; gunicorn calls `create_app()` in each worker (see gunicorn.conf.py).

Importing this module reads no environment and opens no connection: settings are read when
the app is created, and the database pool is opened by the lifespan.
"""

from importlib import metadata

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI

from . import tracing
from .api import bench, capacity, health, items, metrics
from .early_refusal import RefuseBeforeRouting
from .errors import install_error_handlers
from .lifespan import lifespan
from .logs import valid_request_id
from .metrics import registry
from .observe import ObserveRequests
from .overload import RequestDeadline, install_overload_handlers
from .settings import Settings, plan_or_exit, settings_or_exit


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; with no settings given they are read from the environment.

    Called so (by gunicorn in each worker, or `uvicorn --factory`), a bad setting or a plan
    that does not fit ends the process with one line saying why, not a traceback.

    Include the service's own routers at the end, just before `return app`: the template
    adds nothing there, so `copier update` merges what you add without a conflict.
    """
    app = FastAPI(
        title="{{ cookiecutter.project_name|replace('\\', '\\\\')|replace('"', '\\u0022') }}",
        summary="{{ cookiecutter.description|replace('\\', '\\\\')|replace('"', '\\u0022') }}",
        version=metadata.version("{{ cookiecutter.project_slug }}"),
        lifespan=lifespan,
    )
    if settings is None:
        settings = settings_or_exit(Settings)
        plan_or_exit(settings)
    app.state.settings = settings
    app.state.metrics_registry = registry()
    # Outermost last: the request ID is set before anything logs, and the metrics and the access
    # line see every answer, the deadline's 504 and the admission gate's 503 included.
    app.add_middleware(RequestDeadline, seconds=settings.request_timeout)
    app.add_middleware(RefuseBeforeRouting, service=app)  # the gate's refusals, made cheap
    app.add_middleware(ObserveRequests)
    app.add_middleware(CorrelationIdMiddleware, validator=valid_request_id)
    install_overload_handlers(app, retry_after=settings.retry_after)
    install_error_handlers(app)
    app.state.tracer_provider = None
    if tracing.enabled():  # the OTEL_* environment asks for traces: see tracing.py
        tracing.instrument_app(app)
    app.include_router(health.router)
    app.include_router(capacity.router)
    app.include_router(metrics.router)
    app.include_router(items.router)
    if settings.bench_endpoints:  # BENCH_ENDPOINTS=true: for bench/ only
        app.include_router(bench.router)
    return app
