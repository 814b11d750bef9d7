"""The periodic pass over bookings and sessions: close sessions that went silent, mark
no-shows, and complete bookings that were used, or that no gateway watches, once they end.
Booking owns the status writes (booking.attendance); this decides which to make."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from booking.attendance import booking_complete, booking_mark_no_show
from booking.models import Booking, BookingStatus
from core.models import utcnow
from instruments.models import Instrument, Lab
from telemetry.models import (
    BILLABLE_REVIEWS,
    Gateway,
    GatewayInstrument,
    UsageSession,
)
from telemetry.usage import SILENCE, close_session, lock_instruments


def _was_used(session: Session, booking: Booking) -> bool:
    """A session matched it, or overlapped it with no one else's badge."""
    overlapping = sa.and_(
        col(UsageSession.review).in_(BILLABLE_REVIEWS),
        col(UsageSession.start_at) < booking.end_at,
        sa.or_(col(UsageSession.end_at).is_(None), col(UsageSession.end_at) > booking.start_at),
        sa.or_(col(UsageSession.user_id).is_(None), col(UsageSession.user_id) == booking.user_id),
    )
    query = (
        select(UsageSession.id)
        .where(UsageSession.instrument_id == booking.instrument_id)
        .where(
            sa.or_(
                sa.and_(
                    col(UsageSession.booking_id) == booking.id,
                    col(UsageSession.review).in_(BILLABLE_REVIEWS),
                ),
                overlapping,
            )
        )
        .limit(1)
    )
    return session.exec(query).first() is not None


def _watched() -> sa.ColumnElement[bool]:
    """The booking's instrument had a gateway reporting on it when the booking began.

    Without one, nobody could have seen the use: such a booking is neither a no-show nor
    completed by telemetry.
    """
    served_explicitly = (
        select(GatewayInstrument.gateway_id)
        .where(GatewayInstrument.gateway_id == Gateway.id)
        .exists()
    )
    serves_it = (
        select(GatewayInstrument.gateway_id)
        .where(GatewayInstrument.gateway_id == Gateway.id)
        .where(GatewayInstrument.instrument_id == Booking.instrument_id)
        .exists()
    )
    return (
        select(Gateway.id)
        .where(Gateway.lab_id == Instrument.lab_id)
        .where(col(Gateway.created_at) <= Booking.start_at)
        .where(col(Gateway.revoked_at).is_(None))
        .where(sa.or_(~served_explicitly, serves_it))
        .exists()
    )


@dataclass(slots=True)
class Reconciled:
    closed_silent: int = 0
    no_shows: int = 0
    completed: int = 0


def usage_reconcile(
    session: Session,
    *,
    now: datetime | None = None,
    silence: timedelta = SILENCE,
    since: datetime | None = None,
) -> Reconciled:
    """Periodic upkeep: close silent sessions, mark no-shows, complete used bookings, and
    complete ended bookings that no gateway watches; bookings ending after `since` (by
    default the last seven days) are looked at."""
    now = now or utcnow()
    result = Reconciled()
    silent = session.exec(
        select(UsageSession)
        .where(col(UsageSession.end_at).is_(None))
        .where(UsageSession.last_event_at < now - silence)
    ).all()
    # The ingest may be changing these sessions right now: queue behind it (lock_instruments).
    lock_instruments(session, {u.instrument_id for u in silent})
    for usage in silent:
        session.refresh(usage)
        if usage.end_at is not None:
            continue
        close_session(session, usage, at=usage.last_event_at, reason="silence")
    result.closed_silent = len(silent)

    # Only look back a while: older bookings were settled by earlier passes.
    horizon = since or now - timedelta(days=7)
    # Bookings no gateway watches: nobody can tell whether they were used, so they are
    # completed when they end (and billed by the lab's policy, as booked time).
    unwatched = session.exec(
        select(Booking)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .where(Booking.status == BookingStatus.confirmed)
        .where(Booking.end_at <= now, Booking.end_at > horizon)
        .where(~_watched())
    ).all()
    for booking in unwatched:
        booking_complete(session, booking=booking, now=now)
    result.completed += len(unwatched)
    candidates = session.exec(
        select(Booking, Lab.no_show_grace_minutes)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(Booking.status == BookingStatus.confirmed)
        .where(Booking.start_at < now)
        .where(Booking.end_at > horizon)
        .where(_watched())
    ).all()
    for booking, grace in candidates:
        if _was_used(session, booking):
            if booking.end_at <= now:
                booking_complete(session, booking=booking, now=now)
                result.completed += 1
        elif now >= booking.start_at + timedelta(minutes=grace):
            booking_mark_no_show(session, booking=booking, now=now)
            result.no_shows += 1
    session.flush()
    return result
