"""The audit log: who did what to which thing, before and after. Rows are never edited.

It lives in the kernel so every domain, money included, can record into it.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Column, Field, Session, SQLModel

from core.db import UTCDateTime
from core.models import utcnow


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_entity_entity_id", "entity", "entity_id"),
        Index("ix_audit_entry_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    action: str = Field(max_length=100)
    entity: str = Field(max_length=100)
    entity_id: str | None = Field(default=None, max_length=100)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


def audit_value(value: object) -> object:
    """A value as the log keeps it (JSON): an enum's value, a time in ISO 8601."""
    if isinstance(value, Enum):
        return value.value
    return value.isoformat() if isinstance(value, datetime | date) else value


def audit_record(
    session: Session,
    *,
    actor_id: int | None,
    action: str,
    entity: str,
    entity_id: object = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the audit log inside the caller's transaction."""
    entry = AuditEntry(
        actor_id=actor_id,
        action=action,
        entity=entity,
        entity_id=None if entity_id is None else str(entity_id),
        before=before,
        after=after,
    )
    session.add(entry)
    session.flush()
    return entry
