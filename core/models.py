"""Accounts and roles: the only tables the kernel owns."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import MetaData
from sqlmodel import Field, SQLModel

from core.db import NAMING_CONVENTION, UTCDateTime, enum_type

SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    researcher = "researcher"
    lab_manager = "lab_manager"
    institution_admin = "institution_admin"
    network_admin = "network_admin"


class User(SQLModel, table=True):
    """A person who signs in. A lab manager manages `lab_id`; admins their institution."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=200)
    role: Role = Field(default=Role.researcher, sa_type=enum_type(Role))
    institution_id: int | None = Field(default=None, foreign_key="institution.id", index=True)
    lab_id: int | None = Field(default=None, foreign_key="lab.id", index=True)
    feed_token: str = Field(
        default_factory=lambda: secrets.token_urlsafe(24), max_length=64, unique=True
    )
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
