"""Response shapes for gateways, usage and live status."""

from __future__ import annotations

from pydantic import BaseModel

from booking.models import BookingStatus
from core.timeutil import UTCDatetime
from telemetry.models import InstrumentLiveState, Presence, UsageKind


class GatewayPublic(BaseModel):
    gateway_id: str
    lab: str
    name: str
    instruments: list[str]  # codes it serves; empty: all of its lab's
    presence: Presence
    last_seen_at: UTCDatetime | None
    created_at: UTCDatetime
    revoked_at: UTCDatetime | None


class GatewayCreated(BaseModel):
    """The only time the password is shown."""

    gateway_id: str
    password: str


class BookingRef(BaseModel):
    id: int
    start: UTCDatetime
    end: UTCDatetime
    status: BookingStatus
    user_id: int


class UsagePublic(BaseModel):
    id: int
    instrument_id: int
    start: UTCDatetime
    end: UTCDatetime | None  # null while the session is open
    user_id: int | None
    user_badge: str | None
    kind: UsageKind  # booked or walk_up
    booking: BookingRef | None
    overtime_minutes: int
    samples: int
    kwh: float
    closed_reason: str | None


class InstrumentStatusPublic(BaseModel):
    instrument_id: int
    code: str
    state: InstrumentLiveState
    since: UTCDatetime | None
    last_event_at: UTCDatetime | None
    gateway_id: str | None
    gateway_presence: Presence | None
