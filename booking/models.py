"""Bookings, their series, the waitlist and safe retries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ColumnElement,
    Index,
    UniqueConstraint,
    func,
    literal_column,
)
from sqlmodel import Column, Field, SQLModel, col, select

from core.db import UTCDateTime, enum_type
from core.models import utcnow


class BookingStatus(StrEnum):
    pending = "pending"  # awaiting lab approval; holds the slot
    confirmed = "confirmed"
    cancelled = "cancelled"
    rejected = "rejected"
    expired = "expired"  # pending too long without a decision
    displaced = "displaced"  # a blackout took the slot
    completed = "completed"
    no_show = "no_show"


class Assistance(StrEnum):
    """A booker's request for one of the lab's operators ("assisted use"), and the lab's answer."""

    requested = "requested"
    accepted = "accepted"  # an operator is named; the assisted rate applies
    declined = "declined"


# Statuses that hold the instrument: two of these never overlap on one instrument.
ACTIVE_STATUSES = (BookingStatus.pending, BookingStatus.confirmed)


def status_active() -> ColumnElement[bool]:
    """`booking.status IN ('pending', 'confirmed')`, the values written into the SQL: in a
    statement built once it then compiles once, where a list of values is an expanding
    parameter that SQLAlchemy renders into the SQL again on every execution (30 us)."""
    return col(Booking.status).in_([literal_column(f"'{s.value}'") for s in ACTIVE_STATUSES])


def status_among(statuses: Iterable[BookingStatus]) -> ColumnElement[bool]:
    """`booking.status IN statuses` for reads of a list of instruments' bookings, written as
    an expression so that no planner answers it from ix_booking_status_start_at. Given
    both indexes, SQLite (and PostgreSQL for long lists) walks every instrument's bookings
    in the window through (status, start_at) and keeps the few it asked for: 150 ms for a
    catalog page's 25 instruments on the 1.3 M-booking network, against 1 ms through
    (instrument_id, start_at)."""
    return func.lower(col(Booking.status)).in_([s.value for s in statuses])


class BookingSeries(SQLModel, table=True):
    """A recurring booking request (RFC 5545 RRULE) and the occurrences it produced."""

    __tablename__ = "booking_series"

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    rrule: str = Field(max_length=500)
    first_start_at: datetime = Field(sa_type=UTCDateTime)
    duration_minutes: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Booking(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="nonempty"),
        Index("ix_booking_instrument_id_start_at", "instrument_id", "start_at"),
        Index("ix_booking_user_id_start_at", "user_id", "start_at"),
        # Someone's bookings in id order (the list's keyset pages) without walking the whole
        # table: PostgreSQL otherwise scans the primary key and filters.
        Index("ix_booking_user_id_id", "user_id", "id"),
        Index("ix_booking_status_start_at", "status", "start_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id")
    user_id: int = Field(foreign_key="user.id")
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    status: BookingStatus = Field(default=BookingStatus.confirmed, sa_type=enum_type(BookingStatus))
    purpose: str = Field(default="", max_length=1000)
    series_id: int | None = Field(default=None, foreign_key="booking_series.id", index=True)
    # Bumped on every change: the ETag, and the iCalendar SEQUENCE.
    version: int = 1
    # A pending booking that nobody decides on by then expires and frees its slot.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Who cancelled: billing charges a late-cancellation fee only when it is the booker.
    cancelled_by_id: int | None = Field(default=None, foreign_key="user.id")
    # Assisted use: asked for by the booker, accepted by the lab with its operator named.
    assistance: Assistance | None = Field(default=None, sa_type=enum_type(Assistance))
    operator_id: int | None = Field(default=None, foreign_key="user.id")


class IdempotencyKey(SQLModel, table=True):
    """The first answer to a create, kept so a retry with the same key gets it again."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_key_user_key"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id")
    key: str = Field(max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WaitlistStatus(StrEnum):
    waiting = "waiting"
    booked = "booked"
    withdrawn = "withdrawn"
    lapsed = "lapsed"  # the wanted time passed


class WaitlistEntry(SQLModel, table=True):
    """Someone who wants a taken slot; the first who fits gets it when it frees."""

    __tablename__ = "waitlist_entry"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="nonempty"),
        Index("ix_waitlist_entry_instrument_id_status", "instrument_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id")
    user_id: int = Field(foreign_key="user.id", index=True)
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    purpose: str = Field(default="", max_length=1000)
    status: WaitlistStatus = Field(
        default=WaitlistStatus.waiting, sa_type=enum_type(WaitlistStatus)
    )
    booking_id: int | None = Field(default=None, foreign_key="booking.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TrainingRequestStatus(StrEnum):
    open = "open"  # awaiting a session
    scheduled = "scheduled"  # a seat in a session
    done = "done"  # trained (passed or not: the seat says)
    declined = "declined"  # the lab said no, with a reason
    withdrawn = "withdrawn"  # the person changed their mind


class TrainingRequest(SQLModel, table=True):
    """A person asking a lab to train them on an instrument (or for its safety induction)."""

    __tablename__ = "training_request"
    __table_args__ = (Index("ix_training_request_lab_id_status", "lab_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    lab_id: int = Field(foreign_key="lab.id")
    instrument_id: int | None = Field(default=None, foreign_key="instrument.id")
    # Or a category the lab trains for: any of its instruments in it will do.
    category_id: int | None = Field(default=None, foreign_key="category.id")
    level: str = Field(default="independent", max_length=32)
    note: str = Field(default="", max_length=1000)
    status: TrainingRequestStatus = Field(
        default=TrainingRequestStatus.open, sa_type=enum_type(TrainingRequestStatus)
    )
    reason: str = Field(default="", max_length=500)
    seat_id: int | None = Field(default=None, foreign_key="training_seat.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TrainingKind(StrEnum):
    instrument = "instrument"  # grants a qualification on the instrument, at a level
    induction = "induction"  # the lab's safety induction, which some instruments need first


class TrainingSessionStatus(StrEnum):
    scheduled = "scheduled"
    completed = "completed"  # attendance recorded
    cancelled = "cancelled"


class TrainingSession(SQLModel, table=True):
    """A lab's training at a time, with a trainer and a capacity. An instrument session
    holds the instrument's time as a booking (the trainer's), by the booking rules."""

    __tablename__ = "training_session"
    __table_args__ = (CheckConstraint("capacity >= 1", name="capacity_positive"),)

    id: int | None = Field(default=None, primary_key=True)
    lab_id: int = Field(foreign_key="lab.id", index=True)
    instrument_id: int | None = Field(default=None, foreign_key="instrument.id", index=True)
    kind: TrainingKind = Field(default=TrainingKind.instrument, sa_type=enum_type(TrainingKind))
    level: str = Field(default="independent", max_length=32)
    title: str = Field(max_length=200)
    trainer_id: int = Field(foreign_key="user.id")
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    capacity: int = 4
    # How long what it grants lasts, in days (null: no expiry).
    valid_days: int | None = 365
    booking_id: int | None = Field(default=None, foreign_key="booking.id")
    status: TrainingSessionStatus = Field(
        default=TrainingSessionStatus.scheduled, sa_type=enum_type(TrainingSessionStatus)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def not_training_hold() -> ColumnElement[bool]:
    """The booking is not a training session's hold on its instrument (the lab's own time:
    never charged, released or nudged to check in)."""
    holds = select(TrainingSession.booking_id).where(col(TrainingSession.booking_id).is_not(None))
    return col(Booking.id).not_in(holds)


class TrainingSeat(SQLModel, table=True):
    """One person's place in a training session, and what the trainer recorded."""

    __tablename__ = "training_seat"
    __table_args__ = (UniqueConstraint("session_id", "user_id", name="uq_training_seat_person"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="training_session.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    attended: bool | None = None
    passed: bool | None = None
    recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SafetyInduction(SQLModel, table=True):
    """A person completed a lab's safety induction (some instruments need it first)."""

    __tablename__ = "safety_induction"
    __table_args__ = (UniqueConstraint("lab_id", "user_id", name="uq_safety_induction_person"),)

    id: int | None = Field(default=None, primary_key=True)
    lab_id: int = Field(foreign_key="lab.id")
    user_id: int = Field(foreign_key="user.id", index=True)
    completed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    session_id: int | None = Field(default=None, foreign_key="training_session.id")


class IncidentKind(StrEnum):
    broken = "broken"  # it does not work
    dirty = "dirty"  # left dirty or unsafe by the last user
    results = "results"  # results looked wrong
    safety = "safety"  # a hazard
    other = "other"


class IncidentStatus(StrEnum):
    open = "open"
    closed = "closed"


class Incident(SQLModel, table=True):
    """A problem someone reported with an instrument, from its page or its kiosk; the lab
    may block the instrument from it (a blackout) and closes it with a note."""

    __table_args__ = (Index("ix_incident_instrument_id_status", "instrument_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id")
    reporter_id: int | None = Field(default=None, foreign_key="user.id")  # null: at the kiosk
    kind: IncidentKind = Field(sa_type=enum_type(IncidentKind))
    description: str = Field(max_length=2000)
    status: IncidentStatus = Field(default=IncidentStatus.open, sa_type=enum_type(IncidentStatus))
    blackout_id: int | None = Field(default=None, foreign_key="blackout.id")
    closing_note: str = Field(default="", max_length=1000)
    closed_by_id: int | None = Field(default=None, foreign_key="user.id")
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
