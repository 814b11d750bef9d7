"""Accounts and roles: the only tables the kernel owns."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Index, MetaData
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
    # How long before a booking the person is reminded, in minutes ("1440,60": a day and an
    # hour before; empty: never), and the language their messages are written in.
    reminder_minutes: str = Field(
        default="1440,60", max_length=100, sa_column_kwargs={"server_default": "1440,60"}
    )
    language: str = Field(default="en", max_length=8, sa_column_kwargs={"server_default": "en"})


class AuthSession(SQLModel, table=True):
    """One sign-in: the token names it, and it ends at sign-out, a password change or its
    expiry, whichever comes first. Kept in the database so every server process agrees."""

    __tablename__ = "auth_session"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    address: str = Field(default="", max_length=64)


class SignInFailure(SQLModel, table=True):
    """A wrong password (or unknown email), counted per account and per address."""

    __tablename__ = "sign_in_failure"
    __table_args__ = (
        Index("ix_sign_in_failure_email_at", "email", "at"),
        Index("ix_sign_in_failure_address_at", "address", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254)
    address: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
