"""Tables, as SQLAlchemy 2 typed models. migrations/ creates them; keep the two in step
(`alembic check` and tests/test_migrations.py say when they drift)."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, MetaData, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names that are the same in every database, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_MAX_LENGTH = 200


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(Base):
    __tablename__ = "items"
    # Fetch server-generated columns (created_at) with RETURNING on insert, in the same round
    # trip, instead of lazily later (which an async session cannot do).
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy's own attribute)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
