"""Rows billing needs in tests: bookings in a given state and the usage that matched them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from booking.models import Booking, BookingStatus
from core.models import Role, User
from core.security import hash_password
from instruments.models import Institution, Instrument, Lab
from telemetry.models import UsageKind, UsageSession
from tests.factories import PASSWORD

# 2026-11-10 09:00 in Asia/Shanghai; all of it is inside the period 2026-11.
NOV = datetime(2026, 11, 10, 1, 0, tzinfo=UTC)


def book(
    session: Session,
    *,
    instrument: Instrument,
    user: User,
    start: datetime = NOV,
    minutes: int = 120,
    status: BookingStatus = BookingStatus.completed,
    cancelled_at: datetime | None = None,
    cancelled_by: User | None = None,
) -> Booking:
    booking = Booking(
        instrument_id=instrument.id,
        user_id=user.id,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        status=status,
        cancelled_at=cancelled_at,
        cancelled_by_id=cancelled_by.id if cancelled_by else None,
    )
    session.add(booking)
    session.commit()
    return booking


def use(
    session: Session,
    *,
    instrument: Instrument,
    user: User | None,
    start: datetime,
    minutes: int,
    booking: Booking | None = None,
    samples: int = 0,
) -> UsageSession:
    usage = UsageSession(
        instrument_id=instrument.id,
        user_id=user.id if user else None,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        last_event_at=start + timedelta(minutes=minutes),
        booking_id=booking.id if booking else None,
        kind=UsageKind.booked if booking else UsageKind.walk_up,
        samples=samples,
    )
    session.add(usage)
    session.commit()
    return usage


_users = itertools.count(1)
_HASH: list[str] = []


def create_user(
    session: Session,
    *,
    role: Role = Role.researcher,
    lab: Lab | None = None,
    institution: Institution | None = None,
) -> User:
    """A user like the factory's, with the password hashed once per run (argon2 is slow)."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    user = User(
        email=f"billing{next(_users)}@example.org",
        password_hash=_HASH[0],
        role=role,
        lab_id=lab.id if lab else None,
        institution_id=institution.id if institution else lab.institution_id if lab else None,
    )
    session.add(user)
    session.commit()
    return user
