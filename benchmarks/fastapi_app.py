"""The reference: what a user would write instead of the generated service.

A plain FastAPI app, one route, an asyncpg pool opened in the lifespan (one per worker, sized
like the generated service's pool), a pydantic response model, and no admission control of
any kind: under overload, requests simply queue. Served by the same gunicorn, uvicorn-worker,
worker count, keep-alive and access log as the generated services.

    gunicorn -k uvicorn_worker.UvicornWorker -w 2 fastapi_app:app   # DATABASE_URL=postgresql://...
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

QUERY = "SELECT id, name, description, created_at FROM items WHERE id = $1"


class Item(BaseModel):
    id: int
    name: str
    description: str | None
    created_at: datetime


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    size = int(os.environ["DB_POOL_SIZE"]) + int(os.environ.get("DB_MAX_OVERFLOW", "0"))
    app.state.pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request) -> Item:
    row = await request.app.state.pool.fetchrow(QUERY, item_id)
    if row is None:
        raise HTTPException(404, detail=f"item {item_id} not found")
    return Item(**row)
