"""Request and response shapes of calendar feeds, calendar import and notifications."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from booking.calendars.models import CalendarSource
from core.timeutil import UTCDatetime


class FeedLinks(BaseModel):
    """Where a calendar client subscribes to the signed-in person's bookings."""

    feed_url: str = Field(description="https address of the personal .ics feed (keep it secret)")
    webcal_url: str = Field(description="the same, as webcal:// for one-click subscription")


class CalendarUrlIn(BaseModel):
    """Subscribe an instrument to a calendar fetched from a URL on a schedule."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, description="http, https or webcal address")
    refresh_minutes: int = Field(default=60, ge=5, le=7 * 24 * 60)


class CalendarSourcePublic(BaseModel):
    id: int
    instrument_id: int
    kind: Literal["url", "upload"]
    url: str | None
    refresh_minutes: int | None
    last_fetched_at: UTCDatetime | None
    last_error: str | None
    events_imported: int
    created_at: UTCDatetime

    @classmethod
    def of(cls, source: CalendarSource) -> CalendarSourcePublic:
        assert source.id is not None
        return cls(
            id=source.id,
            instrument_id=source.instrument_id,
            kind="url" if source.url else "upload",
            url=source.url,
            refresh_minutes=source.refresh_minutes if source.url else None,
            last_fetched_at=source.last_fetched_at,
            last_error=source.last_error,
            events_imported=source.events_imported,
            created_at=source.created_at,
        )


class CalendarImported(CalendarSourcePublic):
    """A source after an import: what changed in its busy time."""

    added: int
    removed: int
    kept: int
    displaced: int = Field(description="active bookings the new busy time displaced")
