"""Request and response bodies. Anything these refuse is answered 422 before a handler runs."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from .models import NAME_MAX_LENGTH

# Item ids are PostgreSQL bigints: a larger number in a path or query would be a database
# error (a 500) instead of a 422 or a 404.
BIGINT_MAX = 2**63 - 1

# PostgreSQL text cannot hold NUL characters; refusing them here keeps them from being a 500.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NO_NUL)]
Description = Annotated[str, Field(max_length=10_000, pattern=NO_NUL)]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None


class ItemUpdate(BaseModel):
    """A partial update: only the fields present in the body change."""

    model_config = ConfigDict(extra="forbid")

    # Optional but not nullable: None only stands for "absent", and the schema does not offer it.
    name: Name | SkipJsonSchema[None] = None
    description: Description | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str:
        # Omitting name keeps it; sending null would erase a required field.
        if value is None:
            raise ValueError("name cannot be null; omit it to keep the current name")
        return value


class Message(BaseModel):
    """An error answer other than a 422: what went wrong, in words."""

    detail: str


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
