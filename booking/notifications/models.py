"""The notification outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index
from sqlmodel import Column, Field, SQLModel

from core.db import UTCDateTime
from core.models import utcnow


class Notification(SQLModel, table=True):
    """The outbox: what we told a person; a mailer sends those not yet sent."""

    __table_args__ = (
        Index("ix_notification_user_id_created_at", "user_id", "created_at"),
        Index("uq_notification_dedupe_key", "dedupe_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id")
    kind: str = Field(max_length=64)
    subject: str = Field(max_length=300)
    body: str = Field(default="", max_length=10000)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    booking_id: int | None = Field(default=None, foreign_key="booking.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # A reminder's identity ("reminder:booking:17:60:..."): the same reminder is one row,
    # however many passes (or processes) find it due.
    dedupe_key: str | None = Field(default=None, max_length=200)
    # On SQLite a sender holds the rows it is sending until then, so a second sender (in
    # another process) skips them; PostgreSQL's senders lock the rows instead.
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
