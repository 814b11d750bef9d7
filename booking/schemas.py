"""Request and response shapes of bookings, availability, slots, waitlist, blackouts."""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from booking.models import Assistance, Booking, BookingStatus, WaitlistStatus
from core.timeutil import UTCDatetime
from instruments.models import QualificationLevel

Id = Field(ge=1, le=2**31 - 1)


class _Interval(BaseModel):
    start: UTCDatetime
    end: UTCDatetime

    @model_validator(mode="after")
    def _ordered(self) -> _Interval:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class BookingCreate(_Interval):
    model_config = ConfigDict(extra="forbid")

    instrument_id: int = Id
    purpose: str = Field(default="", max_length=1000)
    recurrence: str | None = Field(
        default=None, max_length=500, description="an RFC 5545 RRULE, e.g. FREQ=WEEKLY;COUNT=8"
    )
    allow_partial: bool = Field(
        default=False, description="for a series: book the free occurrences, report the rest"
    )
    assisted: bool = Field(
        default=False,
        description="ask the lab for an operator (assisted use): the lab accepts or "
        "declines, and the assisted rate applies once it accepts",
    )


class BookingReschedule(_Interval):
    model_config = ConfigDict(extra="forbid")

    purpose: str | None = Field(default=None, max_length=1000)


class BookingDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1000)


class BookingPublic(BaseModel):
    id: int
    instrument_id: int
    user_id: int
    start: UTCDatetime
    end: UTCDatetime
    status: BookingStatus
    purpose: str
    series_id: int | None
    version: int
    expires_at: UTCDatetime | None
    created_at: UTCDatetime
    updated_at: UTCDatetime
    cancelled_at: UTCDatetime | None
    assistance: Assistance | None = Field(
        default=None, description="assisted use: requested, accepted (operator named) or declined"
    )
    operator_id: int | None = None


class AssistanceDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accept: bool
    operator_email: str | None = Field(
        default=None, max_length=254, description="the lab's operator (to accept)"
    )
    reason: str = Field(default="", max_length=500, description="why not (to decline)")


def booking_public(booking: Booking) -> BookingPublic:
    """The public view of a booking row."""
    assert booking.id is not None
    return BookingPublic(
        id=booking.id,
        instrument_id=booking.instrument_id,
        user_id=booking.user_id,
        start=booking.start_at,
        end=booking.end_at,
        status=booking.status,
        purpose=booking.purpose,
        series_id=booking.series_id,
        version=booking.version,
        expires_at=booking.expires_at,
        created_at=booking.created_at,
        updated_at=booking.updated_at,
        cancelled_at=booking.cancelled_at,
        assistance=booking.assistance,
        operator_id=booking.operator_id,
    )


class ConflictOut(BaseModel):
    start: str
    end: str
    kind: str


class SkippedOccurrence(BaseModel):
    start: UTCDatetime
    end: UTCDatetime
    reason: str
    conflicts: list[ConflictOut] = []


class SeriesCreated(BookingPublic):
    """A series: the first booking's fields, then every booking and what was skipped."""

    bookings: list[BookingPublic]
    skipped: list[SkippedOccurrence]


class IntervalOut(BaseModel):
    start: UTCDatetime
    end: UTCDatetime


class BusyOut(IntervalOut):
    kind: str
    # A booking awaiting the lab's decision: it holds the time, but may yet free it.
    pending: bool = False


class Availability(BaseModel):
    instrument_id: int
    start: UTCDatetime
    end: UTCDatetime
    free: list[IntervalOut]
    busy: list[BusyOut]


class Slot(BaseModel):
    instrument_id: int
    instrument_code: str
    instrument_name: str
    start: UTCDatetime
    end: UTCDatetime


class Slots(BaseModel):
    items: list[Slot]


class WaitlistCreate(_Interval):
    model_config = ConfigDict(extra="forbid")

    instrument_id: int = Id
    purpose: str = Field(default="", max_length=1000)


class WaitlistPublic(BaseModel):
    id: int
    instrument_id: int
    start: UTCDatetime
    end: UTCDatetime
    purpose: str
    status: WaitlistStatus
    booking_id: int | None
    created_at: UTCDatetime


class BlackoutCreate(_Interval):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["maintenance", "internal"] = "maintenance"
    reason: str = Field(default="", max_length=500)


class BlackoutPublic(BaseModel):
    id: int
    instrument_id: int
    kind: str
    start: UTCDatetime
    end: UTCDatetime
    reason: str
    created_at: UTCDatetime


class DisplacedBooking(BaseModel):
    id: int
    start: UTCDatetime
    end: UTCDatetime
    status: BookingStatus


class BlackoutCreated(BlackoutPublic):
    displaced: list[DisplacedBooking]


class QualificationGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="the person's exact sign-in email",
    )
    level: QualificationLevel = Field(
        default=QualificationLevel.out_of_hours,
        description="supervised and independent: within the lab's staffed hours; "
        "out_of_hours (the default, as before levels existed): any open time",
    )
    expires_at: UTCDatetime | None = Field(
        default=None, description="after this the holder cannot book (none: no expiry)"
    )


class QualificationPublic(BaseModel):
    id: int
    instrument_id: int
    user_id: int | None = Field(description="shown only for people who booked with the lab")
    email: str
    name: str
    granted_at: UTCDatetime
    level: QualificationLevel = QualificationLevel.out_of_hours
    expires_at: UTCDatetime | None = None


# --- training, incidents, reminders ----------------------------------------------------


class TrainingRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instrument_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    lab_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="alone: the lab's safety induction; with category_id: that category",
    )
    category_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="a category the lab trains for"
    )
    level: QualificationLevel = QualificationLevel.independent
    note: str = Field(default="", max_length=1000)


class TrainingRequestPublic(BaseModel):
    id: int
    user_id: int
    lab_id: int
    instrument_id: int | None
    category_id: int | None = None
    level: str
    note: str
    status: str = Field(description="open, scheduled, done, declined or withdrawn")
    reason: str
    created_at: UTCDatetime


class TrainingDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decline: bool = Field(description="true: the lab declines; false: the person withdraws")
    reason: str = Field(default="", max_length=500)


class TrainingSessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=2, max_length=200, examples=["LC-MS/MS basics"])
    start: UTCDatetime
    end: UTCDatetime
    capacity: int = Field(default=4, ge=1, le=100)
    instrument_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    kind: Literal["instrument", "induction"] = "instrument"
    level: QualificationLevel = QualificationLevel.independent
    valid_days: int | None = Field(default=365, ge=1, le=3650)
    trainer_email: str | None = Field(default=None, max_length=254)


class TrainingSessionPublic(BaseModel):
    id: int
    lab_id: int
    instrument_id: int | None
    kind: str
    level: str
    title: str
    trainer_id: int
    start: UTCDatetime
    end: UTCDatetime
    capacity: int
    seats_taken: int
    valid_days: int | None
    booking_id: int | None
    status: str


class TrainingSeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_email: str | None = Field(
        default=None, max_length=254, description="the lab seats someone; none: yourself"
    )


class TrainingSeatPublic(BaseModel):
    id: int
    session_id: int
    user_id: int
    attended: bool | None
    passed: bool | None


class AttendanceIn(BaseModel):
    user_id: int = Field(ge=1, le=2**31 - 1)
    attended: bool
    passed: bool = False


class AttendanceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[AttendanceIn] = Field(min_length=1, max_length=100)


class MyQualification(BaseModel):
    qualification_id: int
    instrument_id: int
    instrument: str
    level: QualificationLevel
    granted_at: UTCDatetime
    expires_at: UTCDatetime | None
    expired: bool


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["broken", "dirty", "results", "safety", "other"]
    description: str = Field(min_length=3, max_length=2000)


class IncidentPublic(BaseModel):
    id: int
    instrument_id: int
    reporter_id: int | None
    kind: str
    description: str
    status: str = Field(description="open or closed")
    blackout_id: int | None
    closing_note: str
    closed_at: UTCDatetime | None
    created_at: UTCDatetime


class IncidentBlock(_Interval):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


class IncidentClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=1000)


class ReminderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes_before: list[int] = Field(
        max_length=5,
        description="minutes before each booking to remind you (empty: never)",
        examples=[[1440, 60]],
    )
    language: Literal["en", "zh"] = "en"


class AttendancePolicy(BaseModel):
    """When a lab's staff are in, and what happens to a booking nobody checks into."""

    model_config = ConfigDict(extra="forbid")

    staffed_from: time = Field(description="local time, Monday to Friday", examples=["08:30"])
    staffed_until: time = Field(examples=["17:30"])
    release_unchecked_minutes: int | None = Field(
        default=None,
        ge=5,
        le=24 * 60,
        description="release a booking nobody checked into this long after its start to "
        "the waitlist, as a no-show (none: never)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> AttendancePolicy:
        if self.staffed_until <= self.staffed_from:
            raise ValueError("staffed_until must be after staffed_from")
        return self


class TrainingCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
