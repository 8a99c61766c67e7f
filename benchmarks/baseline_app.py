"""The raw baseline: the fastest GET /items/{id} one could reasonably write by hand.

A bare ASGI callable (no framework, no ORM, no validation library) over an asyncpg pool
opened in the ASGI lifespan, one per worker, sized like the generated service's pool. It runs
under the same gunicorn + uvicorn-worker as the services, with the same worker count, against
the same database and the same query, and answers the same JSON. The benchmarks compare the
generated variants with it.

    gunicorn -k uvicorn_worker.UvicornWorker -w 2 baseline_app:app   # DATABASE_URL=postgresql://...

With BASELINE_NO_DATABASE=1 it answers every GET /items/{id} with the same bytes and opens no
pool: the floor of the server and the ASGI layer, for the ablations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

import asyncpg

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

QUERY = "SELECT id, name, description, created_at FROM items WHERE id = $1"
JSON_HEADERS = [(b"content-type", b"application/json")]
BIGINT_MAX = 2**63 - 1
CONSTANT = b'{"id":1,"name":"item 1","description":"a description of item 1","created_at":"2026-01-01T00:00:00Z"}'


def _timestamp(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text  # as pydantic writes UTC


class Baseline:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.database = os.environ.get("BASELINE_NO_DATABASE") != "1"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            status, body = await self._respond(scope["path"])
            headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def _respond(self, path: str) -> tuple[int, bytes]:
        if path == "/healthz":
            return 200, b'{"status":"ok"}'
        prefix, _, raw_id = path.rpartition("/")
        if prefix != "/items" or not raw_id.isdigit() or not 1 <= int(raw_id) <= BIGINT_MAX:
            return 404, b'{"detail":"Not Found"}'
        if self.pool is None:
            return 200, CONSTANT
        row = await self.pool.fetchrow(QUERY, int(raw_id))
        if row is None:
            return 404, b'{"detail":"item not found"}'
        item = {**row, "created_at": _timestamp(row["created_at"])}
        return 200, json.dumps(item, separators=(",", ":")).encode()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup" and not self.database:
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.startup":
                url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
                pool_size = int(os.environ.get("DB_POOL_SIZE", "5"))
                overflow = int(os.environ.get("DB_MAX_OVERFLOW", "5"))
                self.pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size + overflow)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = Baseline()
