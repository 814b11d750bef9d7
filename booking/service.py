"""Bookings: create (one or a series), read, list, cancel, reschedule, approve, reject, expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import bindparam, or_
from sqlmodel import Session, col, select

from booking import waitlist
from booking.access import lab_managers, manages
from booking.assistance import assistance_request
from booking.conflicts import near_window
from booking.errors import (
    AlreadyStarted,
    BookingNotFound,
    IfMatchRequired,
    NotAllowed,
    RuleViolation,
    StaleVersion,
)
from booking.events import booking_event
from booking.models import ACTIVE_STATUSES, Booking, BookingStatus
from booking.notifications.outbox import notify
from booking.placement import check_all, expire_booking, initial_status, place, write
from booking.schemas import (
    BookingCreate,
    BookingPublic,
    BookingReschedule,
    SeriesCreated,
)
from booking.series import series_create
from booking.timeline import (
    Timeline,
    busy_of_json,
    busy_one_statement,
    busy_params,
    timeline_of,
)
from core.audit import audit_record
from core.db import is_postgres, json_rows
from core.deps import Unchecked, signed_in_select
from core.models import Role, User
from core.timeutil import to_utc_z, utcnow
from instruments.models import Instrument
from instruments.service import instrument_get, locking_instrument


def etag(booking: Booking) -> str:
    """A weak ETag that changes whenever the booking does."""
    return f'W/"{booking.id}-{booking.version}"'


def _etag_matches(header: str, booking: Booking) -> bool:
    current = etag(booking)
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == current.removeprefix("W/"):
            return True
    return False


# The person and the instrument they book, locked, in one statement.
_SIGNED_IN_LOCKING = locking_instrument(
    signed_in_select(User, Instrument).join(
        Instrument, col(Instrument.id) == bindparam("instrument_id")
    )
)
# ... and the instrument's busy time around the wanted time, in the same row (json_rows:
# a row each would repeat the person's and the instrument's forty columns, and cost as much
# again to read), unless another transaction holds the instrument.
_BUSY_THERE = busy_one_statement("instrument_id").subquery("busy")
_SIGNED_IN_LOCKING_WITH_BUSY = locking_instrument(
    signed_in_select(User, Instrument, sa.select(json_rows(*_BUSY_THERE.c)).scalar_subquery()).join(
        Instrument, col(Instrument.id) == bindparam("instrument_id")
    ),
    skip_locked=True,
)


@dataclass(frozen=True)
class AtInstrument:
    """A booking's start: who books, the instrument (locked), and, when it could be read
    with them, the instrument's timeline around the wanted time."""

    user: User
    instrument: Instrument
    timeline: Timeline | None = None


def _around(data: BookingCreate) -> tuple[datetime, datetime] | None:
    """The time a single booking's check reads (near_window), if the dates allow one."""
    if data.recurrence or data.end <= data.start:
        return None
    try:
        return near_window(data.start, data.end)
    except OverflowError:  # at the calendar's ends: the rules refuse such a time anyway
        return None


def signed_in_at_instrument(session: Session, who: Unchecked, data: BookingCreate) -> AtInstrument:
    """The person a token names, checked as every request checks them, and the instrument
    they want to book, locked, in one statement; for a single booking, the instrument's
    busy time around the wanted time too, so the check reads nothing more.

    On PostgreSQL that statement skips an instrument another transaction holds (its
    snapshot would be older than the lock it waited for): then the person and the
    instrument are read again, waiting for the lock, and the check reads the busy time
    itself, after it. When nothing is found, the two are asked apart, so the answer says
    which one is wrong (401 before 404)."""
    around = _around(data)
    params = {**who.wanted.params(), "instrument_id": data.instrument_id}
    row, timeline = None, None
    if around is not None:
        row = session.exec(
            _SIGNED_IN_LOCKING_WITH_BUSY,  # type: ignore[call-overload]
            params={**params, **busy_params(*around)},
        ).first()
        if row is not None:
            # On PostgreSQL the busy time was read on the statement's snapshot, taken a
            # moment before the lock; SQLite's writers take turns from BEGIN IMMEDIATE.
            timeline = timeline_of(
                session, row[1], busy_of_json(row[2]), read_before_lock=is_postgres(session)
            )
    if row is None:
        row = session.exec(_SIGNED_IN_LOCKING, params=params).first()  # type: ignore[call-overload]
    if row is None:
        user = who.wanted.load(session)
        return AtInstrument(user, instrument_get(session, data.instrument_id, for_update=True))
    checked = who.wanted.check(row[0])
    assert checked is not None  # required: check raised otherwise
    return AtInstrument(checked, row[1], timeline)


def booking_create(
    session: Session,
    *,
    user: User,
    data: BookingCreate,
    now: datetime | None = None,
    instrument: Instrument | None = None,
    timeline: Timeline | None = None,
) -> Booking | SeriesCreated:
    """Book one time or, with `recurrence`, a series (SlotUnavailable and the rules' errors
    otherwise); returns the booking, or the series with what it skipped. `instrument`,
    when given, is the one asked for, already locked, and `timeline` its time around the
    wanted time, if read with it (signed_in_at_instrument)."""
    now = now or utcnow()
    if instrument is None:
        instrument = instrument_get(session, data.instrument_id, for_update=True)
    assert user.id is not None
    if data.recurrence and data.assisted:
        raise RuleViolation("ask for an operator on single bookings, not on a series")
    if data.recurrence:
        created = series_create(session, instrument=instrument, user_id=user.id, data=data, now=now)
        pending = [b for b in created.bookings if b.status == BookingStatus.pending]
        if pending:
            _ask_managers_for_series(session, instrument, pending)
        return created
    if data.allow_partial:
        raise RuleViolation("allow_partial applies to a series (give recurrence)")
    booking = place(
        session,
        instrument,
        user_id=user.id,
        start=data.start,
        end=data.end,
        purpose=data.purpose,
        now=now,
        timeline=timeline,
    )
    if booking.status == BookingStatus.pending:
        _ask_managers(session, instrument, booking)
    if data.assisted:
        assistance_request(session, booking, instrument)
    return booking


def _ask_managers(session: Session, instrument: Instrument, booking: Booking) -> None:
    """Tell the lab's managers a request awaits their decision."""
    for manager in lab_managers(session, instrument.lab_id):
        notify(
            session,
            user_id=manager.id or 0,
            kind="approval_requested",
            subject=f"A booking of {instrument.name} awaits your decision",
            body=(
                f"Requested for {to_utc_z(booking.start_at)} to {to_utc_z(booking.end_at)}; "
                f"it expires at {to_utc_z(booking.expires_at) if booking.expires_at else '-'}."
            ),
            data={"booking_id": booking.id, "instrument_id": instrument.id},
            booking_id=booking.id,
        )


def _ask_managers_for_series(
    session: Session, instrument: Instrument, pending: list[BookingPublic]
) -> None:
    """Tell the lab's managers a series awaits their decision: one message, not one per
    occurrence, so a weekly series for a term does not flood their inbox."""
    first = min(pending, key=lambda b: b.start)
    expires = first.expires_at
    for manager in lab_managers(session, instrument.lab_id):
        notify(
            session,
            user_id=manager.id or 0,
            kind="approval_requested",
            subject=(
                f"A series of {len(pending)} bookings of {instrument.name} awaits your decision"
            ),
            body=(
                f"{len(pending)} occurrences requested, the first for {to_utc_z(first.start)} "
                f"to {to_utc_z(first.end)}; it expires at {to_utc_z(expires) if expires else '-'}."
            ),
            data={
                "booking_id": first.id,
                "series_id": first.series_id,
                "instrument_id": instrument.id,
                "occurrences": len(pending),
                "first_start": to_utc_z(first.start),
            },
            booking_id=first.id,
        )


def _booking_and_instrument(
    session: Session, *, user: User, booking_id: int, lock: bool = False
) -> tuple[Booking, Instrument]:
    """The booking and its instrument; `lock` (for changes) holds the instrument first and
    then reads the booking as the last change to that instrument left it."""
    booking = session.get(Booking, booking_id)
    if booking is None:
        raise BookingNotFound(booking_id)
    instrument = instrument_get(session, booking.instrument_id, for_update=lock)
    if lock:
        session.refresh(booking)
    if booking.user_id != user.id and not manages(user, instrument):
        # Someone else's booking is as good as absent: do not confirm that it exists.
        raise BookingNotFound(booking_id)
    return booking, instrument


def booking_get(session: Session, *, user: User, booking_id: int) -> Booking:
    """The booking, for its owner or a manager of its lab."""
    return _booking_and_instrument(session, user=user, booking_id=booking_id)[0]


@dataclass(frozen=True)
class BookingFilters:
    instrument_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    status: BookingStatus | None = None


def booking_list(
    session: Session, *, user: User, filters: BookingFilters, after: int | None, limit: int
) -> tuple[list[Booking], int | None]:
    """Own bookings (a lab manager also sees the lab's; an administrator all), by id."""
    query = select(Booking)
    if user.role == Role.lab_manager and user.lab_id is not None:
        lab_instruments = select(Instrument.id).where(Instrument.lab_id == user.lab_id)
        query = query.where(
            or_(col(Booking.user_id) == user.id, col(Booking.instrument_id).in_(lab_instruments))
        )
    elif user.role != Role.network_admin:
        query = query.where(Booking.user_id == user.id)
    if filters.instrument_id is not None:
        query = query.where(Booking.instrument_id == filters.instrument_id)
    if filters.start is not None:
        query = query.where(col(Booking.end_at) > filters.start)
    if filters.end is not None:
        query = query.where(col(Booking.start_at) < filters.end)
    if filters.status is not None:
        query = query.where(Booking.status == filters.status)
    if after is not None:
        query = query.where(col(Booking.id) > after)
    rows = list(session.exec(query.order_by(col(Booking.id)).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def _require_active(booking: Booking, action: Literal["cancel", "reschedule"]) -> None:
    if booking.status in ACTIVE_STATUSES:
        return
    status = booking.status.value
    if action == "cancel":
        raise RuleViolation(f"a {status} booking cannot be cancelled")
    raise RuleViolation(f"a {status} booking cannot be rescheduled")


def _touch(booking: Booking, now: datetime) -> None:
    booking.version += 1
    booking.updated_at = now


def booking_cancel(
    session: Session, *, user: User, booking_id: int, now: datetime | None = None
) -> Booking:
    """Cancel an active booking; the freed time goes to the waitlist."""
    now = now or utcnow()
    booking, instrument = _booking_and_instrument(
        session, user=user, booking_id=booking_id, lock=True
    )
    _require_active(booking, "cancel")
    if booking.start_at <= now and not manages(user, instrument):
        raise AlreadyStarted()
    booking.status = BookingStatus.cancelled
    booking.cancelled_at = now
    booking.cancelled_by_id = user.id
    _touch(booking, now)
    session.add(booking)
    session.flush()
    booking_event(session, "booking.cancelled", booking, lab_id=instrument.lab_id)
    if booking.user_id != user.id:
        notify(
            session,
            user_id=booking.user_id,
            kind="booking_cancelled",
            subject="The lab cancelled your booking",
            body=f"Your booking at {to_utc_z(booking.start_at)} was cancelled by the lab.",
            data={"booking_id": booking.id, "instrument_id": booking.instrument_id},
            booking_id=booking.id,
        )
    waitlist.promote(
        session,
        instrument_id=booking.instrument_id,
        start=booking.start_at,
        end=booking.end_at,
        now=now,
    )
    return booking


def booking_reschedule(
    session: Session,
    *,
    user: User,
    booking_id: int,
    data: BookingReschedule,
    if_match: str | None,
    now: datetime | None = None,
) -> Booking:
    """Move an active booking; needs If-Match with its current ETag."""
    now = now or utcnow()
    booking, instrument = _booking_and_instrument(
        session, user=user, booking_id=booking_id, lock=True
    )
    if not if_match:
        raise IfMatchRequired()
    if not _etag_matches(if_match, booking):
        raise StaleVersion(etag(booking))
    _require_active(booking, "reschedule")
    old = (booking.start_at, booking.end_at)
    check_all(
        session,
        instrument,
        user_id=booking.user_id,
        start=data.start,
        end=data.end,
        now=now,
        ignore=booking.id,
    )
    booking.start_at, booking.end_at = data.start, data.end
    if data.purpose is not None:
        booking.purpose = data.purpose
    if instrument.approval_required and not manages(user, instrument):
        # A new time needs the lab's approval again.
        booking.status, booking.expires_at = initial_status(instrument, data.start, now)
    _touch(booking, now)
    write(session, booking, instrument, now=now)
    waitlist.promote(
        session, instrument_id=booking.instrument_id, start=old[0], end=old[1], now=now
    )
    return booking


def _decide(
    session: Session, *, user: User, booking_id: int, approve: bool, reason: str, now: datetime
) -> Booking:
    booking, instrument = _booking_and_instrument(
        session, user=user, booking_id=booking_id, lock=True
    )
    if not manages(user, instrument):
        raise NotAllowed("only a manager of the instrument's lab decides on bookings")
    if booking.status != BookingStatus.pending:
        raise RuleViolation(
            f"only a pending booking can be decided; this one is {booking.status.value}"
        )
    if approve and booking.expires_at is not None and booking.expires_at <= now:
        expire_booking(session, booking, now)
        raise RuleViolation("the request expired before the decision")
    booking.status = BookingStatus.confirmed if approve else BookingStatus.rejected
    booking.expires_at = None
    booking.decided_by_id = user.id
    _touch(booking, now)
    session.add(booking)
    session.flush()
    verdict = "approved" if approve else "rejected"
    if approve:
        booking_event(session, "booking.confirmed", booking, lab_id=instrument.lab_id)
    audit_record(
        session,
        actor_id=user.id,
        action=f"booking.{'approve' if approve else 'reject'}",
        entity="booking",
        entity_id=booking.id,
        before={"status": "pending"},
        after={"status": booking.status.value, "reason": reason}
        if reason
        else {"status": booking.status.value},
    )
    notify(
        session,
        user_id=booking.user_id,
        kind=f"booking_{verdict}",
        subject=f"Your booking request was {verdict}",
        body=(f"Your booking at {to_utc_z(booking.start_at)} was {verdict}. {reason}").strip(),
        data={"booking_id": booking.id, "instrument_id": booking.instrument_id, "reason": reason},
        booking_id=booking.id,
    )
    if not approve:
        waitlist.promote(
            session,
            instrument_id=booking.instrument_id,
            start=booking.start_at,
            end=booking.end_at,
            now=now,
        )
    return booking


def booking_approve(
    session: Session, *, user: User, booking_id: int, reason: str = "", now: datetime | None = None
) -> Booking:
    """Confirm a pending booking (a manager of its lab)."""
    return _decide(
        session, user=user, booking_id=booking_id, approve=True, reason=reason, now=now or utcnow()
    )


def booking_reject(
    session: Session, *, user: User, booking_id: int, reason: str = "", now: datetime | None = None
) -> Booking:
    """Reject a pending booking (a manager of its lab); the time goes to the waitlist."""
    return _decide(
        session, user=user, booking_id=booking_id, approve=False, reason=reason, now=now or utcnow()
    )


def bookings_expire(
    session: Session, *, now: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Expire pending bookings past their decision deadline; returns their ids."""
    now = now or utcnow()
    overdue = session.exec(
        select(Booking)
        .where(Booking.status == BookingStatus.pending, col(Booking.expires_at) <= now)
        .order_by(col(Booking.expires_at))
        .limit(limit)
    ).all()
    expired: list[int] = []
    # Instruments are locked in id order, so two expiry passes never wait on each other.
    for booking in sorted(overdue, key=lambda b: (b.instrument_id, b.id or 0)):
        instrument_get(session, booking.instrument_id, for_update=True)
        session.refresh(booking)
        if booking.status != BookingStatus.pending:
            continue  # decided meanwhile
        expire_booking(session, booking, now)
        waitlist.promote(
            session,
            instrument_id=booking.instrument_id,
            start=booking.start_at,
            end=booking.end_at,
            now=now,
        )
        if booking.id is not None:
            expired.append(booking.id)
    return expired
