"""A lab's own calendars, imported as busy time."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from core.db import UTCDateTime
from core.models import utcnow


class CalendarSource(SQLModel, table=True):
    """A lab's own calendar for one instrument; its events become imported busy time."""

    __tablename__ = "calendar_source"

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id", index=True)
    url: str | None = Field(default=None, max_length=2000)
    refresh_minutes: int = 60
    last_fetched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)
    events_imported: int = 0
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
