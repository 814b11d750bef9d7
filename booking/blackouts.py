"""Blackouts: time a lab takes an instrument out of booking (maintenance, internal use).

A blackout wins over bookings: the active ones it overlaps become `displaced`, and each
owner is told and offered alternatives. Imported calendar busy time displaces the same way.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from booking import waitlist
from booking.access import require_manages
from booking.conflicts import ALTERNATIVE_WINDOW, nearest_on_instrument
from booking.elsewhere import same_time_elsewhere
from booking.errors import BlackoutNotFound, RuleViolation
from booking.events import booking_event
from booking.models import ACTIVE_STATUSES, Booking, BookingStatus
from booking.notifications.outbox import notify
from booking.schemas import (
    BlackoutCreate,
    BlackoutCreated,
    BlackoutPublic,
    DisplacedBooking,
)
from booking.timeline import load_timeline
from core.audit import audit_record
from core.models import User
from core.timeutil import to_utc_z, utcnow
from instruments.models import Blackout, BlackoutKind, Instrument
from instruments.service import instrument_get

MAX_BLACKOUT_DAYS = 366


def blackout_public(blackout: Blackout) -> BlackoutPublic:
    assert blackout.id is not None
    return BlackoutPublic(
        id=blackout.id,
        instrument_id=blackout.instrument_id,
        kind=blackout.kind.value,
        start=blackout.start_at,
        end=blackout.end_at,
        reason=blackout.reason,
        created_at=blackout.created_at,
    )


def displace_overlapping(
    session: Session,
    *,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    reason: str,
    now: datetime | None = None,
) -> list[Booking]:
    """Active bookings overlapping [start, end) become `displaced`; each owner is told and
    offered alternatives. Calendar import may call this for imported busy time too."""
    now = now or utcnow()
    hit = session.exec(
        select(Booking)
        .where(
            Booking.instrument_id == instrument.id,
            col(Booking.status).in_(ACTIVE_STATUSES),
            col(Booking.start_at) < end,
            col(Booking.end_at) > start,
        )
        .order_by(col(Booking.start_at))
    ).all()
    for booking in hit:
        booking.status = BookingStatus.displaced
        booking.version += 1
        booking.updated_at = now
        session.add(booking)
        booking_event(session, "booking.displaced", booking, lab_id=instrument.lab_id)
    session.flush()
    if not hit:
        return []
    # One timeline for every displaced booking's neighbourhood (the bookings are gone from it).
    span_end = max(b.end_at for b in hit)
    wide = load_timeline(
        session,
        instrument,
        hit[0].start_at - ALTERNATIVE_WINDOW,
        span_end + 2 * ALTERNATIVE_WINDOW,
    )
    for booking in hit:
        offers = nearest_on_instrument(
            wide, booking.start_at, booking.end_at, now=now
        ) + same_time_elsewhere(
            session, instrument, booking.start_at, booking.end_at, user_id=booking.user_id, now=now
        )
        notify(
            session,
            user_id=booking.user_id,
            kind="booking_displaced",
            subject="Your booking was displaced by the lab",
            body=(
                f"The lab blocked the instrument from {to_utc_z(start)} to {to_utc_z(end)}"
                f"{': ' + reason if reason else ''}. Your booking at "
                f"{to_utc_z(booking.start_at)} no longer holds; these times are free instead."
            ),
            data={
                "booking_id": booking.id,
                "instrument_id": booking.instrument_id,
                "alternatives": offers,
                # What the booking's page says about why (the lab's own words).
                "reason": reason,
                "blocked": {"start": to_utc_z(start), "end": to_utc_z(end)},
            },
            booking_id=booking.id,
        )
    return list(hit)


def blackout_create(
    session: Session, *, user: User, instrument_id: int, data: BlackoutCreate
) -> BlackoutCreated:
    """Block an instrument for maintenance or internal use; overlapping bookings are displaced."""
    instrument = instrument_get(session, instrument_id, for_update=True)
    require_manages(user, instrument)
    if (data.end - data.start).days > MAX_BLACKOUT_DAYS:
        raise RuleViolation(f"a blackout lasts at most {MAX_BLACKOUT_DAYS} days")
    blackout = Blackout(
        instrument_id=instrument_id,
        start_at=data.start,
        end_at=data.end,
        kind=BlackoutKind(data.kind),
        reason=data.reason,
    )
    session.add(blackout)
    session.flush()
    displaced = displace_overlapping(
        session, instrument=instrument, start=data.start, end=data.end, reason=data.reason
    )
    audit_record(
        session,
        actor_id=user.id,
        action="blackout.create",
        entity="instrument",
        entity_id=instrument_id,
        after={
            "blackout_id": blackout.id,
            "start": to_utc_z(data.start),
            "end": to_utc_z(data.end),
            "kind": blackout.kind.value,
            "reason": data.reason,
            "displaced_bookings": [b.id for b in displaced],
        },
    )
    return BlackoutCreated(
        **blackout_public(blackout).model_dump(),
        displaced=[
            DisplacedBooking(id=b.id or 0, start=b.start_at, end=b.end_at, status=b.status)
            for b in displaced
        ],
    )


def blackout_list(
    session: Session, *, instrument_id: int, start: datetime | None, end: datetime | None
) -> list[Blackout]:
    """The instrument's blackouts (every kind) overlapping [start, end), earliest first."""
    instrument_get(session, instrument_id)
    query = select(Blackout).where(Blackout.instrument_id == instrument_id)
    if start is not None:
        query = query.where(col(Blackout.end_at) > start)
    if end is not None:
        query = query.where(col(Blackout.start_at) < end)
    return list(session.exec(query.order_by(col(Blackout.start_at)).limit(1000)).all())


def blackout_delete(session: Session, *, user: User, instrument_id: int, blackout_id: int) -> None:
    """Lift a maintenance or internal blackout; the time goes to the waitlist."""
    instrument = instrument_get(session, instrument_id, for_update=True)
    require_manages(user, instrument)
    blackout = session.get(Blackout, blackout_id)
    if blackout is None or blackout.instrument_id != instrument_id:
        raise BlackoutNotFound(blackout_id)
    if blackout.kind == BlackoutKind.imported:
        raise RuleViolation("imported busy time follows its calendar; change it there")
    start, end = blackout.start_at, blackout.end_at
    audit_record(
        session,
        actor_id=user.id,
        action="blackout.lift",
        entity="instrument",
        entity_id=instrument_id,
        before={"blackout_id": blackout.id, "start": to_utc_z(start), "end": to_utc_z(end),
                "kind": blackout.kind.value, "reason": blackout.reason},
    )  # fmt: skip
    session.delete(blackout)
    session.flush()
    waitlist.promote(session, instrument_id=instrument_id, start=start, end=end, now=utcnow())
