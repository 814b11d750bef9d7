"""The periodic pass over bookings and sessions: close sessions that went silent, mark
no-shows, and complete bookings that were used, or that no gateway watches, once they end.
Booking owns the status writes (booking.attendance); this decides which to make."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from booking import waitlist
from booking.attendance import booking_complete, booking_mark_no_show
from booking.models import Booking, BookingStatus, not_training_hold
from booking.notifications.outbox import notify
from core.models import utcnow
from core.timeutil import local_text
from instruments.models import Instrument, Lab
from instruments.service import instrument_get
from telemetry.models import (
    BILLABLE_REVIEWS,
    Gateway,
    GatewayInstrument,
    UsageSession,
    UsageSource,
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


# How long after its booking ends an open kiosk session is taken as forgotten.
KIOSK_FORGOTTEN = timedelta(hours=1)


@dataclass(slots=True)
class Reconciled:
    closed_silent: int = 0
    no_shows: int = 0
    completed: int = 0
    released: int = 0


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
        .where(UsageSession.source == UsageSource.gateway)
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
    # A kiosk session nobody checked out closes at its booking's end, once that is a
    # while ago (a person forgets; the tablet does not know).
    forgotten = session.exec(
        select(UsageSession, Booking.end_at)
        .join(Booking, col(Booking.id) == UsageSession.booking_id)
        .where(col(UsageSession.end_at).is_(None))
        .where(UsageSession.source == UsageSource.kiosk)
        .where(Booking.end_at < now - KIOSK_FORGOTTEN)
    ).all()
    for usage, booking_end in forgotten:
        close_session(session, usage, at=max(booking_end, usage.start_at), reason="not_checked_out")
    result.closed_silent += len(forgotten)

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
    result.released = len(bookings_release_unchecked(session, now=now))
    return result


def bookings_release_unchecked(session: Session, *, now: datetime) -> list[int]:
    """Where a lab's policy says so, a booking nobody checked into (at the kiosk, or seen
    by a gateway) within its minutes becomes a no-show, its owner is told, and the rest of
    its time goes at once to the waitlist. Returns the released bookings' ids."""
    rows = session.exec(
        select(Booking, Lab.release_unchecked_minutes)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(col(Lab.release_unchecked_minutes).is_not(None))
        .where(Booking.status == BookingStatus.confirmed, not_training_hold())
        .where(Booking.start_at < now, Booking.end_at > now)
    ).all()
    released: list[int] = []
    for booking, minutes in sorted(rows, key=lambda r: (r[0].instrument_id, r[0].id or 0)):
        if minutes is None or now < booking.start_at + timedelta(minutes=minutes):
            continue
        # The kiosk and the ingest change this instrument's sessions under its lock.
        instrument_get(session, booking.instrument_id, for_update=True)
        session.refresh(booking)
        if booking.status != BookingStatus.confirmed or _was_used(session, booking):
            continue
        booking_mark_no_show(session, booking=booking, now=now)
        session.flush()
        notify(
            session,
            user_id=booking.user_id,
            kind="booking_released",
            subject="Your booking was released: nobody checked in",
            body=(
                f"Nobody checked in within {minutes} minutes of your booking's start "
                f"({local_text(booking.start_at)}), so the lab's policy released the rest of "
                "its time to others; it counts as a no-show."
            ),
            data={"booking_id": booking.id, "instrument_id": booking.instrument_id},
            booking_id=booking.id,
        )
        waitlist.promote(
            session, instrument_id=booking.instrument_id, start=now, end=booking.end_at, now=now
        )
        assert booking.id is not None
        released.append(booking.id)
    return released
