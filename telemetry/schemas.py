"""Response shapes for gateways, usage and live status."""

from __future__ import annotations

from pydantic import BaseModel, Field

from booking.models import BookingStatus
from core.timeutil import UTCDatetime
from telemetry.models import (
    InstrumentLiveState,
    Presence,
    UsageKind,
    UsageReview,
    UsageSource,
)


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
    review: UsageReview = Field(
        description="accepted or confirmed: billed; held: awaits the lab; dismissed: never billed"
    )
    hold_reason: str | None = None
    source: UsageSource = Field(
        default=UsageSource.gateway,
        description="gateway: telemetry; kiosk: the booker checked in; manual: an operator",
    )
    note: str | None = Field(default=None, description="an operator's reason, for manual")


class CheckIn(BaseModel):
    pin: str | None = Field(
        default=None,
        pattern=r"^[0-9]{6}$",
        description="the six-digit PIN the booking shows; without it, the signed-in booker's",
        examples=["042917"],
    )


class ManualUsage(BaseModel):
    start: UTCDatetime
    end: UTCDatetime
    reason: str = Field(min_length=3, max_length=300, examples=["gateway PC was off"])
    booking_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    person_email: str | None = Field(
        default=None, max_length=254, description="for a walk-up: who used it"
    )


class KioskPublic(BaseModel):
    """What a kiosk beside the instrument shows (no names: anyone can read it)."""

    instrument_id: int
    code: str
    name: str
    booking_start: UTCDatetime | None = Field(description="the booking running now")
    booking_end: UTCDatetime | None
    checked_in: bool
    in_use_since: UTCDatetime | None
    next_start: UTCDatetime | None


class BadgeIn(BaseModel):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    email: str = Field(min_length=3, max_length=254, description="whose badge it is")


class BadgePublic(BaseModel):
    id: int
    code: str
    user_id: int
    email: str
    name: str
    lab: str | None  # the lab that registered it; null: network-wide
    created_at: UTCDatetime


class UsageConfirm(BaseModel):
    email: str = Field(min_length=3, max_length=254, description="who used the instrument")


class UsageDismiss(BaseModel):
    reason: str = Field(default="", max_length=500)


class InstrumentStatusPublic(BaseModel):
    instrument_id: int
    code: str
    state: InstrumentLiveState
    since: UTCDatetime | None
    last_event_at: UTCDatetime | None
    gateway_id: str | None
    gateway_presence: Presence | None
