"""Requests sent at once from the test process, each on its own connection (httpx)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None


def concurrently(url: str, path: str, count: int) -> list[Answer]:
    """`count` requests at once, each on its own connection; any transport error fails the test."""

    async def one(client: httpx.AsyncClient) -> Answer:
        started = time.monotonic()
        response = await client.get(path)
        return Answer(response.status_code, time.monotonic() - started, response.headers.get("Retry-After"))

    async def all_of_them() -> list[Answer]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(count)))

    return asyncio.run(all_of_them())
