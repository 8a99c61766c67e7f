"""Sleeping endpoints for the threadpool experiment of bench/ (`python -m bench`).

They exist only when BENCH_ENDPOINTS=true: create_app() includes this router then, and never
otherwise, so a production service does not offer a way to hold its threads.

- GET /bench/sleep/sync: a `def` handler; Starlette runs it in AnyIO's thread pool, and
  `time.sleep` holds a thread for the whole sleep.
- GET /bench/sleep/async: an `async def` handler; `asyncio.sleep` holds no thread, and the
  worker's event loop serves other requests meanwhile.
"""

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

router = APIRouter(prefix="/bench", tags=["bench"], include_in_schema=False)

Seconds = Annotated[float, Query(ge=0, le=10)]


class Slept(BaseModel):
    seconds: float


@router.get("/sleep/sync")
def sleep_in_a_thread(seconds: Seconds = 2.0) -> Slept:
    time.sleep(seconds)
    return Slept(seconds=seconds)


@router.get("/sleep/async")
async def sleep_on_the_event_loop(seconds: Seconds = 2.0) -> Slept:
    await asyncio.sleep(seconds)
    return Slept(seconds=seconds)
