"""The notification outbox's response shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from booking.notifications.models import Notification
from core.timeutil import UTCDatetime


class NotificationPublic(BaseModel):
    id: int
    kind: str
    subject: str
    body: str
    data: dict[str, Any]
    booking_id: int | None
    created_at: UTCDatetime
    read_at: UTCDatetime | None
    sent_at: UTCDatetime | None

    @classmethod
    def of(cls, note: Notification) -> NotificationPublic:
        assert note.id is not None
        return cls(
            id=note.id,
            kind=note.kind,
            subject=note.subject,
            body=note.body,
            data=note.data or {},
            booking_id=note.booking_id,
            created_at=note.created_at,
            read_at=note.read_at,
            sent_at=note.sent_at,
        )


class NotificationPage(BaseModel):
    items: list[NotificationPublic]
    next: str | None = None
    unread: int = Field(description="how many of your notifications are unread, in all")


class MarkedRead(BaseModel):
    marked: int
