"""One choice at a time: GET /items/{id} of the async variant, from the ORM path it was first
generated with to the path it has now, each step changing one thing (cumulatively).

gunicorn loads `ablations:create_app()` from the generated service's environment (the
benchmark puts this folder on PYTHONPATH and names the service's package in SERVICE_PACKAGE,
the step in ABLATION). The app is the generated one, with a route for GET /items/{item_id}
put in front of its own, so that everything else (middleware, admission, settings, pool) is
what the service really runs.

Steps:
- orm:            AsyncSession.get + ItemRead.model_validate + response_model validation and
                  serialisation, pool_pre_ping=True (the first generated version)
- idle_ping:      the same, pinging only connections idle for 2 s instead of at every checkout
- autocommit:     + a connection in autocommit mode: no BEGIN and ROLLBACK around the SELECT
- core:           + a Core SELECT of four columns instead of the ORM
- preserialised:  + the JSON bytes built by pydantic and returned as a Response, skipping
                  FastAPI's response_model validation
- driver_fetch:   + the statement run by asyncpg itself on the connection SQLAlchemy's pool
                  checks out (`get_raw_connection().driver_connection.fetchrow`): what
                  SQLAlchemy's execution layer costs on top of its pool
- fastapi_asyncpg: the same app and admission, the route on a raw asyncpg pool instead of
                  SQLAlchemy's: the bound for a FastAPI route with this database work
- no_database:    the same route answering constant bytes: FastAPI's own floor (routing,
                  middleware, path validation), with no database work at all

Without ABLATION the app is the generated one, unchanged (the benchmarks run it under a
different gunicorn worker class or config for the server-level ablations).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, which name
# objects made at run time (the service's own SessionDep and models).
import asyncio
import importlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import TypeAdapter
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uvicorn_worker import UvicornWorker

STEPS = ("orm", "idle_ping", "autocommit", "core", "preserialised", "driver_fetch", "fastapi_asyncpg", "no_database")
# The same statement as the baseline's, for the steps that bypass SQLAlchemy's execution.
RAW_QUERY = "SELECT id, name, description, created_at FROM items WHERE id = $1"


class AsyncioH11Worker(UvicornWorker):
    """uvicorn with the standard library's event loop and the pure-Python h11 parser."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}  # noqa: RUF012 (uvicorn-worker's own)


def create_app() -> FastAPI:
    package = os.environ["SERVICE_PACKAGE"]
    step = os.environ.get("ABLATION", "")
    main = importlib.import_module(f"{package}.main")
    if not step:
        return main.create_app()
    if step not in STEPS:
        raise ValueError(f"ABLATION={step!r}; expected one of {STEPS}")
    db = importlib.import_module(f"{package}.db")
    _set_pre_ping(db, step == "orm")
    app = main.create_app()
    # Admitted like the service's own database routes (AdmissionRoute refuses or admits first).
    router = APIRouter(route_class=importlib.import_module(f"{package}.admission").AdmissionRoute)
    router.add_api_route("/items/{item_id}", _handler(package, step, db), methods=["GET"])
    app.router.routes.insert(0, router.routes[0])
    return app


def _set_pre_ping(db: Any, enabled: bool) -> None:
    generated = db.create_engine

    def create_engine(settings: Any) -> AsyncEngine:
        engine: AsyncEngine = generated(settings)
        engine.sync_engine.pool._pre_ping = enabled  # what create_engine(pool_pre_ping=...) sets
        return engine

    db.create_engine = create_engine


def _handler(package: str, step: str, db: Any) -> Any:
    models = importlib.import_module(f"{package}.models")
    schemas = importlib.import_module(f"{package}.schemas")
    admission = importlib.import_module(f"{package}.admission")
    item_model, item_read = models.Item, schemas.ItemRead
    columns = select(item_model.id, item_model.name, item_model.description, item_model.created_at)
    by_id = columns.where(item_model.id == bindparam("item_id"))
    serializer = TypeAdapter(item_read)

    async def autocommit_connection(request: Request, _: admission.Admitted) -> AsyncIterator[AsyncConnection]:
        state = request.app.state
        if getattr(state, "autocommit_engine", None) is None:  # made once: each call registers events
            state.autocommit_engine = state.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with state.autocommit_engine.connect() as connection:
            yield connection

    connection_dep = Annotated[AsyncConnection, Depends(autocommit_connection, scope="function")]

    def missing(item_id: int) -> HTTPException:
        return HTTPException(404, detail=f"item {item_id} not found")

    if step in ("orm", "idle_ping"):

        async def orm(item_id: int, session: db.SessionDep) -> item_read:
            item = await session.get(item_model, item_id)
            if item is None:
                raise missing(item_id)
            return item_read.model_validate(item)

        return orm
    if step == "autocommit":

        async def orm_autocommit(item_id: int, session: db.SessionDep) -> item_read:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            item = await session.get(item_model, item_id)
            if item is None:
                raise missing(item_id)
            return item_read.model_validate(item)

        return orm_autocommit
    if step == "core":

        async def core(item_id: int, connection: connection_dep) -> item_read:
            row = (await connection.execute(by_id, {"item_id": item_id})).first()
            if row is None:
                raise missing(item_id)
            return item_read.model_validate(row._mapping)

        return core

    if step == "driver_fetch":

        async def driver_fetch(item_id: int, connection: connection_dep) -> Response:
            raw = await connection.get_raw_connection()
            record = await raw.driver_connection.fetchrow(RAW_QUERY, item_id)
            if record is None:
                raise missing(item_id)
            return Response(serializer.dump_json(item_read.model_construct(**record)), media_type="application/json")

        return driver_fetch

    if step == "fastapi_asyncpg":
        opening = asyncio.Lock()

        async def raw_pool(request: Request) -> asyncpg.Pool:
            """One asyncpg pool per worker, sized like the service's, opened by the first request."""
            state = request.app.state
            pool: asyncpg.Pool | None = getattr(state, "raw_pool", None)
            if pool is not None:
                return pool
            async with opening:
                if getattr(state, "raw_pool", None) is None:
                    settings = state.settings
                    url = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
                    size = settings.db_pool_size + settings.db_max_overflow
                    state.raw_pool = await asyncpg.create_pool(url, min_size=settings.db_pool_size, max_size=size)
            return state.raw_pool

        async def fastapi_asyncpg(item_id: int, request: Request, _: admission.Admitted) -> Response:
            record = await (await raw_pool(request)).fetchrow(RAW_QUERY, item_id)
            if record is None:
                raise missing(item_id)
            return Response(serializer.dump_json(item_read.model_construct(**record)), media_type="application/json")

        return fastapi_asyncpg

    if step == "no_database":
        constant = serializer.dump_json(
            item_read(id=1, name="item 1", description="a description of item 1", created_at="2026-01-01T00:00:00Z")
        )

        async def no_database(item_id: int) -> Response:
            return Response(constant, media_type="application/json")

        return no_database

    async def preserialised(item_id: int, connection: connection_dep) -> Response:
        row = (await connection.execute(by_id, {"item_id": item_id})).first()
        if row is None:
            raise missing(item_id)
        body = serializer.dump_json(item_read.model_construct(**row._mapping))
        return Response(body, media_type="application/json")

    return preserialised
