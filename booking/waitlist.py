"""The waitlist: people who want a taken time; when it frees, the first who fits gets it."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from booking.errors import NotAllowed, RuleViolation, SlotUnavailable, WaitlistEntryNotFound
from booking.models import WaitlistEntry, WaitlistStatus
from booking.notifications.outbox import notify
from booking.placement import place
from booking.rules import check_qualification, check_shape
from booking.schemas import WaitlistCreate, WaitlistPublic
from booking.timeline import load_timeline, zone
from core.errors import AppError
from core.models import User
from core.timeutil import to_utc_z, utcnow
from instruments.service import instrument_get

MAX_WAITING_PER_USER = 50


def waitlist_public(entry: WaitlistEntry) -> WaitlistPublic:
    assert entry.id is not None
    return WaitlistPublic(
        id=entry.id,
        instrument_id=entry.instrument_id,
        start=entry.start_at,
        end=entry.end_at,
        purpose=entry.purpose,
        status=entry.status,
        booking_id=entry.booking_id,
        created_at=entry.created_at,
    )


def waitlist_join(
    session: Session, *, user: User, data: WaitlistCreate, now: datetime | None = None
) -> WaitlistEntry:
    """Wait for a time that another booking holds; a free time should be booked instead."""
    now = now or utcnow()
    assert user.id is not None
    instrument = instrument_get(session, data.instrument_id)
    check_shape(instrument, data.start, data.end, now=now, tz=zone())
    check_qualification(session, instrument, user.id, start=data.start, end=data.end, now=now)
    conflicts = load_timeline(session, instrument, data.start, data.end).conflicts(
        data.start, data.end
    )
    if not conflicts:
        raise RuleViolation("that time is free: book it instead of waiting")
    if any(c.kind != "booking" for c in conflicts):
        raise RuleViolation("that time is closed or blacked out; the waitlist is for booked time")
    waiting = session.exec(
        select(WaitlistEntry.id).where(
            WaitlistEntry.user_id == user.id, WaitlistEntry.status == WaitlistStatus.waiting
        )
    ).all()
    if len(waiting) >= MAX_WAITING_PER_USER:
        raise RuleViolation(f"at most {MAX_WAITING_PER_USER} waitlist entries at a time")
    entry = WaitlistEntry(
        instrument_id=data.instrument_id,
        user_id=user.id,
        start_at=data.start,
        end_at=data.end,
        purpose=data.purpose,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    return entry


def waitlist_list(
    session: Session, *, user: User, status: WaitlistStatus | None = None
) -> list[WaitlistEntry]:
    """The user's own entries, newest first."""
    query = select(WaitlistEntry).where(WaitlistEntry.user_id == user.id)
    if status is not None:
        query = query.where(WaitlistEntry.status == status)
    return list(session.exec(query.order_by(col(WaitlistEntry.id).desc()).limit(200)).all())


def waitlist_withdraw(session: Session, *, user: User, entry_id: int) -> WaitlistEntry:
    """Leave the waitlist."""
    entry = session.get(WaitlistEntry, entry_id)
    if entry is None or entry.user_id != user.id:
        raise WaitlistEntryNotFound(entry_id)
    if entry.status != WaitlistStatus.waiting:
        raise NotAllowed(f"the entry is {entry.status.value}, no longer waiting")
    entry.status = WaitlistStatus.withdrawn
    session.add(entry)
    session.flush()
    return entry


def promote(
    session: Session, *, instrument_id: int, start: datetime, end: datetime, now: datetime
) -> list[int]:
    """Time [start, end) freed: book it for the waiting entries that now fit, first come first
    served; returns the new booking ids."""
    entries = session.exec(
        select(WaitlistEntry)
        .where(
            WaitlistEntry.instrument_id == instrument_id,
            WaitlistEntry.status == WaitlistStatus.waiting,
            col(WaitlistEntry.start_at) < end,
            col(WaitlistEntry.end_at) > start,
        )
        .order_by(col(WaitlistEntry.created_at), col(WaitlistEntry.id))
    ).all()
    if not entries:
        return []
    instrument = instrument_get(session, instrument_id, for_update=True)
    booked: list[int] = []
    for entry in entries:
        if entry.start_at < now:
            entry.status = WaitlistStatus.lapsed
            session.add(entry)
            continue
        try:
            booking = place(
                session,
                instrument,
                user_id=entry.user_id,
                start=entry.start_at,
                end=entry.end_at,
                purpose=entry.purpose,
                now=now,
                savepoint=True,
            )
        except SlotUnavailable:
            continue  # still (partly) taken: keep waiting
        except AppError:
            continue  # a rule stands in the way now (lead time, quota...): keep waiting
        entry.status = WaitlistStatus.booked
        entry.booking_id = booking.id
        session.add(entry)
        assert booking.id is not None
        booked.append(booking.id)
        notify(
            session,
            user_id=entry.user_id,
            kind="waitlist_booked",
            subject="A time you waited for is now booked for you",
            body=(
                f"The time you waited for ({to_utc_z(entry.start_at)} to "
                f"{to_utc_z(entry.end_at)}) freed up and is booked for you "
                f"({booking.status.value})."
            ),
            data={
                "booking_id": booking.id,
                "waitlist_entry_id": entry.id,
                "instrument_id": instrument_id,
            },
            booking_id=booking.id,
        )
    session.flush()
    return booked
