"""The application factory; gunicorn calls `create_app()` in each worker (see gunicorn.conf.py).

Importing this module reads no environment and opens no connection: settings are read when
the app is created, and the database pool is opened by the lifespan.
"""

from importlib import metadata

from fastapi import FastAPI

from .api import health, items
from .lifespan import lifespan
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; with no settings given they are read from the environment."""
    app = FastAPI(
        title={{ cookiecutter.project_name|tojson|replace('\\"', '\\u0022') }},
        summary={{ cookiecutter.description|tojson|replace('\\"', '\\u0022') }},
        version=metadata.version("{{ cookiecutter.project_slug }}"),
        lifespan=lifespan,
    )
    app.state.settings = settings if settings is not None else Settings()
    app.include_router(health.router)
    app.include_router(items.router)
    return app
