"""The reference for the ORM path: what a user would write from the FastAPI and SQLAlchemy docs.

POST /items and GET /items on SQLAlchemy's asyncio ORM over asyncpg: an engine opened in the
lifespan (one pool per worker, sized like the generated service's), an AsyncSession per
request through a dependency, pydantic models in and out, and no admission control, no
middleware and no access log. The table is the generated service's (its migration made it).

    gunicorn -k uvicorn_worker.UvicornWorker -w 2 fastapi_orm_app:app   # DATABASE_URL=postgresql://...
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import DateTime, String, Text, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (created_at comes back with RETURNING)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ItemCreate(BaseModel):
    name: str
    description: str | None = None


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(
        url, pool_size=int(os.environ["DB_POOL_SIZE"]), max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "0"))
    )
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/items", status_code=201)
async def create_item(body: ItemCreate, session: SessionDep) -> ItemRead:
    item = Item(**body.model_dump())
    session.add(item)
    await session.commit()
    return ItemRead.model_validate(item)


@app.get("/items")
async def list_items(session: SessionDep, limit: int = 20, offset: int = 0) -> list[ItemRead]:
    rows = await session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
    return [ItemRead.model_validate(item) for item in rows]
