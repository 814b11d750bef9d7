"""A series of bookings from an RRULE: all or nothing, or (allow_partial) the free ones."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from booking.conflicts import alternatives
from booking.errors import RuleViolation, SlotUnavailable
from booking.events import booking_event
from booking.models import Booking, BookingSeries
from booking.placement import new_booking, settle_overdue, write
from booking.recurrence import expand
from booking.rules import check_qualification, check_quota, check_shape, qualification_problem
from booking.schemas import (
    BookingCreate,
    ConflictOut,
    SeriesCreated,
    SkippedOccurrence,
    booking_public,
)
from booking.timeline import Busy, load_timeline, zone
from instruments.models import Instrument


def series_create(
    session: Session, *, instrument: Instrument, user_id: int, data: BookingCreate, now: datetime
) -> SeriesCreated:
    """Expand the rule from the first booking and book its occurrences."""
    assert data.recurrence is not None and instrument.id is not None
    tz = zone()
    occurrences = expand(data.recurrence, data.start, data.end, tz)
    check_qualification(session, instrument, user_id, now=now)
    timeline = load_timeline(session, instrument, occurrences[0][0], occurrences[-1][1])
    accepted: list[tuple[datetime, datetime]] = []
    skipped: list[SkippedOccurrence] = []
    for start, end in occurrences:
        try:
            check_shape(instrument, start, end, now=now, tz=tz)
            problem = qualification_problem(
                session, instrument, user_id, start=start, end=end, now=now
            )
            if problem:
                raise RuleViolation(problem)
            check_quota(session, instrument, user_id, [*accepted, (start, end)], tz=tz)
        except RuleViolation as exc:
            skipped.append(SkippedOccurrence(start=start, end=end, reason=exc.message))
            continue
        conflicts = settle_overdue(session, timeline, timeline.conflicts(start, end), now)
        if conflicts:
            kinds = ", ".join(sorted({c.kind for c in conflicts}))
            skipped.append(
                SkippedOccurrence(
                    start=start,
                    end=end,
                    reason=f"not free ({kinds})",
                    conflicts=[ConflictOut(**c.public()) for c in conflicts],
                )
            )
            continue
        accepted.append((start, end))
        # Later occurrences must not overlap this one either.
        timeline.add(Busy(start, end, "booking"))
    if skipped and (not data.allow_partial or not accepted):
        _refuse(session, instrument, user_id, skipped, total=len(occurrences), now=now)
    series = BookingSeries(
        instrument_id=instrument.id,
        user_id=user_id,
        rrule=data.recurrence.strip()[:500],
        first_start_at=accepted[0][0],
        duration_minutes=int((data.end - data.start).total_seconds() // 60),
        created_at=now,
    )
    session.add(series)
    session.flush()
    booked: list[Booking] = []
    for start, end in accepted:
        booking = new_booking(
            instrument,
            user_id=user_id,
            start=start,
            end=end,
            purpose=data.purpose,
            now=now,
            series_id=series.id,
        )
        if data.allow_partial:
            # One occurrence taken by someone else meanwhile must not sink the rest.
            try:
                write(session, booking, instrument, now=now, savepoint=True)
            except SlotUnavailable as exc:
                skipped.append(
                    SkippedOccurrence(
                        start=start,
                        end=end,
                        reason=exc.message,
                        conflicts=[ConflictOut(**c) for c in exc.extra["conflicts"]],
                    )
                )
                continue
        else:
            write(session, booking, instrument, now=now)
        booked.append(booking)
        booking_event(session, "booking.created", booking, lab_id=instrument.lab_id)
    if not booked:
        _refuse(session, instrument, user_id, skipped, total=len(occurrences), now=now)
    skipped.sort(key=lambda s: s.start)
    first = booking_public(booked[0])
    return SeriesCreated(
        **first.model_dump(),
        bookings=[booking_public(b) for b in booked],
        skipped=skipped,
    )


def _refuse(
    session: Session,
    instrument: Instrument,
    user_id: int,
    skipped: list[SkippedOccurrence],
    *,
    total: int,
    now: datetime,
) -> None:
    """All or nothing failed: a 409 when only conflicts stand in the way, else a 422."""
    occurrences = [s.model_dump(mode="json") for s in skipped]
    message = f"{len(skipped)} of {total} occurrences cannot be booked"
    if any(not s.conflicts for s in skipped):
        rule = next(s for s in skipped if not s.conflicts)
        raise RuleViolation(
            f"{message}; the first at {occurrences[skipped.index(rule)]['start']}: {rule.reason}",
            occurrences=occurrences,
        )
    first = skipped[0]
    assert instrument.id is not None
    raise SlotUnavailable(
        message + " (not free)",
        conflicts=[c.model_dump() for s in skipped for c in s.conflicts],
        alternatives=alternatives(
            session, instrument, first.start, first.end, user_id=user_id, now=now
        ),
        occurrences=occurrences,
    )
