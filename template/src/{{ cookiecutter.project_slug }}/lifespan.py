"""What each worker sets up when it starts serving and tears down when it stops.

The lifespan runs in every gunicorn worker after the fork (the app is never preloaded in the
master), so each worker gets its own connection pool, and no socket is shared across
processes. Each resource adds one context manager here; they close in reverse order.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .db import open_database
from .settings import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with open_database(app, settings):
        yield
