"""A lab's own calendar as busy time: its sources, and their import as imported blackouts.

Everything that can fail (size, syntax, recurrence expansion) happens before anything is
written; the write then replaces the source's busy time in one transaction, by difference,
so a re-import of the same calendar changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from booking.blackouts import displace_overlapping
from booking.calendars.models import CalendarSource
from booking.calendars.parse import (
    BusyEvent,
    CalendarRejected,
    expand_calendar,
)
from booking.models import ACTIVE_STATUSES, Booking
from core.errors import NotFound
from core.models import User
from core.outbound import UnsafeUrl, normalise_http_url
from core.timeutil import utcnow
from instruments.models import Blackout, BlackoutKind, Instrument
from instruments.service import instrument_get, require_manager


class CalendarSourceNotFound(NotFound):
    def __init__(self, source_id: int) -> None:
        super().__init__(f"no calendar {source_id} on this instrument")


@dataclass(frozen=True)
class ImportResult:
    source: CalendarSource
    added: int
    removed: int
    kept: int
    displaced: int


# ------------------------------------------------------------------------------------- write


def lock_source(session: Session, source_id: int) -> CalendarSource | None:
    # Two syncs of one source take turns (SQLite: the write lock already serialises).
    return session.exec(
        select(CalendarSource).where(CalendarSource.id == source_id).with_for_update()
    ).first()


def apply_busy_events(
    session: Session,
    *,
    source: CalendarSource,
    instrument: Instrument,
    events: list[BusyEvent],
    now: datetime,
) -> ImportResult:
    """Make the source's imported busy time exactly `events`, changing only what differs.

    New busy time displaces active bookings it overlaps, as a blackout does."""
    assert source.id is not None and instrument.id is not None
    # Busy time displaces bookings: this instrument's calendar changes one writer at a time.
    instrument_get(session, instrument.id, for_update=True)
    existing = session.exec(
        select(Blackout).where(
            Blackout.source_id == source.id, Blackout.kind == BlackoutKind.imported
        )
    ).all()
    have = {(b.source_uid or "", b.start_at, b.end_at): b for b in existing}
    want = {(e.uid, e.start, e.end) for e in events}
    gone = [b.id for key, b in have.items() if key not in want]
    for i in range(0, len(gone), 500):
        session.exec(delete(Blackout).where(col(Blackout.id).in_(gone[i : i + 500])))  # type: ignore[call-overload]
    added = sorted(key for key in want if key not in have)
    session.add_all(
        Blackout(
            instrument_id=instrument.id,
            start_at=start,
            end_at=end,
            kind=BlackoutKind.imported,
            reason=f"imported calendar {source.id}",
            source_id=source.id,
            source_uid=uid,
        )
        for uid, start, end in added
    )
    source.events_imported = len(want)
    source.last_fetched_at = now
    source.last_error = None
    session.add(source)
    session.flush()
    displaced = _displace(session, instrument=instrument, added=added, now=now)
    return ImportResult(
        source=source,
        added=len(added),
        removed=len(gone),
        kept=len(want) - len(added),
        displaced=displaced,
    )


def _displace(
    session: Session,
    *,
    instrument: Instrument,
    added: list[tuple[str, datetime, datetime]],
    now: datetime,
) -> int:
    if not added:
        return 0
    # One query for the bookings near the new busy time; displace only where one is hit.
    lo, hi = min(a[1] for a in added), max(a[2] for a in added)
    bookings = session.exec(
        select(Booking.start_at, Booking.end_at).where(
            Booking.instrument_id == instrument.id,
            col(Booking.status).in_(ACTIVE_STATUSES),
            col(Booking.start_at) < hi,
            col(Booking.end_at) > lo,
            col(Booking.end_at) > now,
        )
    ).all()
    count = 0
    for _uid, start, end in added:
        # Time already past displaces nothing: a booking there was used, or not, already.
        start = max(start, now)
        if end > start and any(b_start < end and b_end > start for b_start, b_end in bookings):
            count += len(
                displace_overlapping(
                    session,
                    instrument=instrument,
                    start=start,
                    end=end,
                    reason="the lab's own calendar shows it busy",
                    now=now,
                )
            )
    return count


# ----------------------------------------------------------------------------- the sources


def normalise_url(url: str) -> str:
    """An http(s) URL for a calendar subscription (webcal:// means https://); 422 otherwise."""
    url = url.strip()
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://") :]
    try:
        return normalise_http_url(url)
    except UnsafeUrl as exc:
        raise CalendarRejected(exc.message.replace("an http or https", "an http, https or webcal"))


def _source_of(session: Session, instrument_id: int, source_id: int) -> CalendarSource:
    source = session.get(CalendarSource, source_id)
    if source is None or source.instrument_id != instrument_id:
        raise CalendarSourceNotFound(source_id)
    return source


@dataclass(frozen=True)
class ExpandedCalendar:
    """An uploaded calendar, parsed and expanded for one instrument, not yet written."""

    instrument_id: int
    events: list[BusyEvent]
    now: datetime


def calendar_expand_for(
    session: Session, *, instrument: Instrument, data: bytes, now: datetime | None = None
) -> ExpandedCalendar:
    """Parse and expand .ics bytes over the instrument's import window; reads only.

    Run it before the write transaction: a dense calendar can take a second, and on SQLite
    nobody else may write while a writer's transaction is open."""
    assert instrument.id is not None
    now = now or utcnow()
    return ExpandedCalendar(
        instrument.id, expand_calendar(data, instrument=instrument, now=now), now
    )


def calendar_upload_expand(
    session: Session, *, user: User, instrument_id: int, data: bytes, now: datetime | None = None
) -> ExpandedCalendar:
    """An upload checked (a manager of the instrument's lab) and expanded; reads only."""
    instrument = instrument_get(session, instrument_id)
    require_manager(user, instrument)
    return calendar_expand_for(session, instrument=instrument, data=data, now=now)


def calendar_import_body(
    session: Session,
    *,
    user: User,
    upload: ExpandedCalendar,
    source_id: int | None = None,
) -> ImportResult:
    """Import an expanded upload as busy time: a new source, or replace an uploaded one."""
    instrument = instrument_get(session, upload.instrument_id)
    require_manager(user, instrument)
    return calendar_import_events(
        session, instrument=instrument, upload=upload, source_id=source_id, user_id=user.id
    )


def calendar_import_events(
    session: Session,
    *,
    instrument: Instrument,
    upload: ExpandedCalendar,
    source_id: int | None = None,
    user_id: int | None = None,
) -> ImportResult:
    """Write an expanded calendar for `instrument` (no permission check: the caller did it)."""
    assert instrument.id is not None and instrument.id == upload.instrument_id
    if source_id is None:
        source = CalendarSource(instrument_id=instrument.id, url=None, created_by_id=user_id)
        session.add(source)
        session.flush()
    else:
        locked = lock_source(session, source_id)
        if locked is None or locked.instrument_id != instrument.id:
            raise CalendarSourceNotFound(source_id)
        source = locked
        if source.url:
            raise CalendarRejected("this calendar is fetched from its URL; upload a new one")
    return apply_busy_events(
        session, source=source, instrument=instrument, events=upload.events, now=upload.now
    )


def calendar_source_add_url(
    session: Session, *, user: User, instrument_id: int, url: str, refresh_minutes: int
) -> CalendarSource:
    """Subscribe the instrument to a calendar URL; the sync fetches it (first at once)."""
    instrument = instrument_get(session, instrument_id)
    require_manager(user, instrument)
    source = CalendarSource(
        instrument_id=instrument_id,
        url=normalise_url(url),
        refresh_minutes=refresh_minutes,
        created_by_id=user.id,
    )
    session.add(source)
    session.flush()
    return source


def calendar_source_list(
    session: Session, *, user: User, instrument_id: int
) -> list[CalendarSource]:
    """The instrument's imported calendars (their URLs may be secret: managers only)."""
    require_manager(user, instrument_get(session, instrument_id))
    return list(
        session.exec(
            select(CalendarSource)
            .where(CalendarSource.instrument_id == instrument_id)
            .order_by(col(CalendarSource.id))
        ).all()
    )


def calendar_source_delete(
    session: Session, *, user: User, instrument_id: int, source_id: int
) -> int:
    """Remove a calendar and all its busy time; returns how many busy intervals went."""
    require_manager(user, instrument_get(session, instrument_id))
    source = _source_of(session, instrument_id, source_id)
    result = session.exec(  # type: ignore[call-overload]
        delete(Blackout).where(
            col(Blackout.source_id) == source_id, col(Blackout.kind) == BlackoutKind.imported
        )
    )
    session.delete(source)
    session.flush()
    return int(result.rowcount or 0)
