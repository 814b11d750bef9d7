"""Putting one booking on the calendar: every rule, then the conflict check, then the write.

The database has the last word: on PostgreSQL the exclusion constraint ex_booking_no_overlap
refuses an overlap that slipped between our check and our insert (two requests at once); on
SQLite the request's transaction holds the write lock (BEGIN IMMEDIATE) from its start, so
the check and the insert cannot interleave with another writer.

A single booking's check reads the instrument's busy time in the statement that takes its
lock (booking.service.signed_in_at_instrument), on a snapshot a moment older than the lock;
a blackout has no constraint to stop an overlap, so that booking's insert looks for one as
of its own statement (_INSERT_CLEAR_OF_BLACKOUTS).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col

from booking.conflicts import near_window, unavailable
from booking.events import booking_event, event_data
from booking.models import Booking, BookingStatus
from booking.notifications.outbox import notify
from booking.rules import check_qualification, check_quota, check_shape
from booking.timeline import Busy, Timeline, load_timeline, zone
from core.db import built, is_postgres
from core.events import insert_with_event
from core.timeutil import to_utc_z
from instruments.models import Blackout, Instrument

# A pending booking holds its slot this long (or until it starts) awaiting the lab's decision.
PENDING_HOLD = timedelta(hours=48)
EXCLUSION_VIOLATION = "23P01"


def is_overlap_violation(exc: IntegrityError) -> bool:
    """True when PostgreSQL's exclusion constraint refused an overlapping active booking."""
    return getattr(exc.orig, "sqlstate", None) == EXCLUSION_VIOLATION


def initial_status(
    instrument: Instrument, start: datetime, now: datetime
) -> tuple[BookingStatus, datetime | None]:
    if instrument.approval_required:
        return BookingStatus.pending, min(now + PENDING_HOLD, start)
    return BookingStatus.confirmed, None


def expire_booking(session: Session, booking: Booking, now: datetime) -> None:
    """A pending booking nobody decided on in time: expired, its owner told."""
    booking.status = BookingStatus.expired
    booking.version += 1
    booking.updated_at = now
    session.add(booking)
    session.flush()
    notify(
        session,
        user_id=booking.user_id,
        kind="booking_expired",
        subject="Your booking request expired without a decision",
        body=f"The lab did not decide on your request for {to_utc_z(booking.start_at)} in time.",
        data={"booking_id": booking.id, "instrument_id": booking.instrument_id},
        booking_id=booking.id,
    )


def settle_overdue(
    session: Session, timeline: Timeline, conflicts: list[Busy], now: datetime
) -> list[Busy]:
    """Expire overdue pending bookings found in the way (the periodic pass may lag); return
    what still conflicts."""
    still: list[Busy] = []
    for item in conflicts:
        if item.status == BookingStatus.pending and item.expires_at and item.expires_at <= now:
            booking = session.get(Booking, item.booking_id)
            if booking is not None and booking.status == BookingStatus.pending:
                expire_booking(session, booking, now)
                timeline.remove_booking(item.booking_id or 0)
                continue
        still.append(item)
    return still


def check_all(
    session: Session,
    instrument: Instrument,
    *,
    user_id: int,
    start: datetime,
    end: datetime,
    now: datetime,
    ignore: int | None = None,
    timeline: Timeline | None = None,
) -> Timeline:
    """Every rule and every conflict for [start, end); raises the first failure. `timeline`:
    the instrument's, already read over near_window(start, end)."""
    tz = zone()
    check_shape(instrument, start, end, now=now, tz=tz)
    check_qualification(session, instrument, user_id, start=start, end=end, now=now)
    check_quota(session, instrument, user_id, [(start, end)], tz=tz, ignore=ignore)
    # A day either side costs the same index range and a few rows more, and lets a refusal
    # offer the nearest free slots on this instrument without reading it again.
    timeline = timeline or load_timeline(session, instrument, *near_window(start, end))
    conflicts = settle_overdue(
        session, timeline, timeline.conflicts(start, end, ignore=ignore), now
    )
    if conflicts:
        raise unavailable(
            session,
            instrument,
            start,
            end,
            conflicts,
            user_id=user_id,
            now=now,
            ignore=ignore,
            timeline=timeline,
        )
    return timeline


_TABLE = Booking.__table__  # type: ignore[attr-defined]
_COLUMNS = [c.key for c in _TABLE.columns if c.key != "id"]
# The values as named parameters: insert_with_event puts the statement inside a WITH.
_INSERT = (
    sa.insert(Booking)
    .values({key: sa.bindparam(key) for key in _COLUMNS})
    .returning(col(Booking.id))
)


def _insert_clear_of_blackouts() -> sa.Insert:
    """_INSERT, but only where no blackout of the instrument overlaps the booking, as of the
    statement: for a check whose busy time was read before the lock (Timeline's
    read_before_lock)."""
    values = {key: sa.bindparam(key, type_=_TABLE.c[key].type) for key in _COLUMNS}
    blackout = sa.exists().where(
        col(Blackout.instrument_id) == values["instrument_id"],
        col(Blackout.start_at) < values["end_at"],
        col(Blackout.end_at) > values["start_at"],
    )
    return (
        sa.insert(Booking)
        .from_select(_COLUMNS, sa.select(*values.values()).where(~blackout))
        .returning(col(Booking.id))
    )


_INSERT_CLEAR_OF_BLACKOUTS = _insert_clear_of_blackouts()


def insert_new(
    session: Session,
    booking: Booking,
    *,
    announce: str | None = None,
    lab_id: int | None = None,
    clear_of_blackouts: bool = False,
) -> bool:
    """INSERT a new booking at once, with its `announce` event (the lab `lab_id`'s) when
    given, and make it the session's, as if loaded: the ORM's unit of work flushed the same
    row for about 0.2 ms more CPU a booking. `clear_of_blackouts`: only if no blackout
    overlaps it now; False when one does, and nothing was written."""
    values = {key: getattr(booking, key) for key in _COLUMNS}
    insert = _INSERT_CLEAR_OF_BLACKOUTS if clear_of_blackouts else _INSERT
    if announce is None:
        new_id = session.connection().execute(insert, values).scalar_one_or_none()
    else:
        new_id = insert_with_event(
            session,
            insert,
            values,
            announce,
            lab_id=lab_id,
            data=event_data(booking),
            id_key="booking_id",
        )
    if new_id is None:
        return False
    booking.id = new_id
    make_transient_to_detached(booking)
    session.add(booking)
    return True


def write(
    session: Session,
    booking: Booking,
    instrument: Instrument,
    *,
    now: datetime,
    savepoint: bool = False,
    announce: str | None = None,
    recheck_blackouts: bool = False,
) -> None:
    """Flush the new or changed booking, and record its `announce` event when given; an
    overlap the database refuses becomes the 409. `recheck_blackouts`: the check read the
    busy time before it held the instrument (Timeline's read_before_lock).

    Without a savepoint the failed transaction is rolled back whole (the request fails
    anyway); callers that go on afterwards (a partial series, the waitlist) ask for one.
    """
    start, end, user_id, ignore = booking.start_at, booking.end_at, booking.user_id, booking.id
    try:
        if savepoint and is_postgres(session):
            with session.begin_nested():
                session.add(booking)
                session.flush()
        elif sa.inspect(booking).transient:
            if not insert_new(
                session,
                booking,
                announce=announce,
                lab_id=instrument.lab_id,
                clear_of_blackouts=recheck_blackouts,
            ):
                # A blackout came in after the check read the instrument's time: check
                # again, on what is there now (the 409 names it).
                check_all(session, instrument, user_id=user_id, start=start, end=end, now=now)
                insert_new(session, booking, announce=announce, lab_id=instrument.lab_id)
            announce = None  # recorded with the row
        else:
            session.add(booking)
            session.flush()
    except IntegrityError as exc:
        if not is_overlap_violation(exc):
            raise
        if not savepoint:
            session.rollback()
        fresh = load_timeline(session, instrument, start, end)
        conflicts = fresh.conflicts(start, end, ignore=ignore) or [Busy(start, end, "booking")]
        raise unavailable(
            session,
            instrument,
            start,
            end,
            conflicts,
            user_id=user_id,
            now=now,
            ignore=ignore,
            message="the time was taken a moment ago (booking)",
            raced=True,
        )
    if announce is not None:
        booking_event(session, announce, booking, lab_id=instrument.lab_id)


def new_booking(
    instrument: Instrument,
    *,
    user_id: int,
    start: datetime,
    end: datetime,
    purpose: str,
    now: datetime,
    series_id: int | None = None,
) -> Booking:
    status, expires_at = initial_status(instrument, start, now)
    assert instrument.id is not None
    return built(
        Booking,
        instrument_id=instrument.id,
        user_id=user_id,
        start_at=start,
        end_at=end,
        status=status,
        expires_at=expires_at,
        purpose=purpose,
        series_id=series_id,
        created_at=now,
        updated_at=now,
    )


def place(
    session: Session,
    instrument: Instrument,
    *,
    user_id: int,
    start: datetime,
    end: datetime,
    purpose: str = "",
    now: datetime,
    savepoint: bool = False,
    timeline: Timeline | None = None,
) -> Booking:
    """Check everything and book [start, end) for the user (`timeline`: the instrument's
    over near_window(start, end), when the caller read it)."""
    checked = check_all(
        session, instrument, user_id=user_id, start=start, end=end, now=now, timeline=timeline
    )
    booking = new_booking(
        instrument, user_id=user_id, start=start, end=end, purpose=purpose, now=now
    )
    write(
        session,
        booking,
        instrument,
        now=now,
        savepoint=savepoint,
        announce="booking.created",
        recheck_blackouts=checked.read_before_lock,
    )
    return booking


def lab_hold(
    session: Session,
    instrument: Instrument,
    *,
    user_id: int,
    start: datetime,
    end: datetime,
    purpose: str,
    now: datetime,
) -> Booking:
    """The lab's own time on its instrument (a training session, a service run), held as a
    confirmed booking in its person's name: the same timeline check and exclusion constraint
    as any booking (409 with alternatives when taken), but closed hours do not stop a lab."""
    timeline = load_timeline(session, instrument, start, end)
    taken = [c for c in timeline.conflicts(start, end) if c.kind != "closed"]
    if taken:
        raise unavailable(session, instrument, start, end, taken, user_id=user_id, now=now)
    assert instrument.id is not None
    hold = Booking(
        instrument_id=instrument.id,
        user_id=user_id,
        start_at=start,
        end_at=end,
        status=BookingStatus.confirmed,
        purpose=purpose[:1000],
        created_at=now,
        updated_at=now,
    )
    write(session, hold, instrument, now=now)
    return hold


def lab_hold_release(session: Session, hold: Booking, *, by_id: int | None, now: datetime) -> None:
    """Cancel a lab's hold (a run moved, a session called off). Its time is the caller's to
    hand to the waitlist, when the caller's own new hold, if any, is in place."""
    hold.status = BookingStatus.cancelled
    hold.cancelled_at = now
    hold.cancelled_by_id = by_id
    hold.version += 1
    session.add(hold)
    session.flush()
