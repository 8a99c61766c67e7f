"""The application factory; gunicorn calls `create_app()` in each worker (see gunicorn.conf.py).

Importing this module reads no environment and opens no connection: settings are read when
the app is created, and the database pool is opened by the lifespan.
"""

from importlib import metadata

from fastapi import FastAPI

from .api import bench, capacity, health, items
from .lifespan import lifespan
from .overload import RequestDeadline, install_overload_handlers
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; with no settings given they are read from the environment."""
    app = FastAPI(
        title="{{ cookiecutter.project_name|replace('\\', '\\\\')|replace('"', '\\u0022') }}",
        summary="{{ cookiecutter.description|replace('\\', '\\\\')|replace('"', '\\u0022') }}",
        version=metadata.version("{{ cookiecutter.project_slug }}"),
        lifespan=lifespan,
    )
    settings = settings if settings is not None else Settings()
    app.state.settings = settings
    app.add_middleware(RequestDeadline, seconds=settings.request_timeout)
    install_overload_handlers(app, retry_after=settings.retry_after)
    app.include_router(health.router)
    app.include_router(capacity.router)
    app.include_router(items.router)
    if settings.bench_endpoints:  # BENCH_ENDPOINTS=true: for bench/ only
        app.include_router(bench.router)
    return app
