"""Why a time cannot be booked, and what to offer instead: the 409's conflicts and alternatives."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, exists, or_
from sqlmodel import Session, col, select

from booking.errors import RuleViolation, SlotUnavailable
from booking.models import ACTIVE_STATUSES, Booking
from booking.rules import check_shape
from booking.timeline import (
    LONGEST_BOOKING,
    Busy,
    Timeline,
    grid_starts,
    load_timeline,
    load_timelines,
    zone,
)
from core.timeutil import to_utc_z
from instruments.models import (
    Blackout,
    Instrument,
    InstrumentStatus,
    Lab,
    Qualification,
    qualification_in_force,
)

# How far either side of the wanted time we look for a free slot on the same instrument.
ALTERNATIVE_WINDOW = timedelta(days=7)
SAME_INSTRUMENT_MAX = 4
EQUIVALENT_MAX = 5


def slot(instrument_id: int, start: datetime, end: datetime) -> dict[str, object]:
    return {"instrument_id": instrument_id, "start": to_utc_z(start), "end": to_utc_z(end)}


def _bookable_starts(instrument: Instrument, now: datetime) -> tuple[datetime, datetime]:
    """The earliest and latest start the lead time and horizon allow."""
    return (
        now + timedelta(minutes=instrument.lead_minutes),
        now + timedelta(days=instrument.horizon_days),
    )


def nearest_on_instrument(
    timeline: Timeline,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    ignore: int | None = None,
    limit: int = SAME_INSTRUMENT_MAX,
) -> list[dict[str, object]]:
    """The nearest free slots of the same length before and after, nearest first."""
    instrument = timeline.instrument
    assert instrument.id is not None
    length = end - start
    earliest, latest = _bookable_starts(instrument, now)
    lo = max(start - ALTERNATIVE_WINDOW, earliest)
    hi = min(end + ALTERNATIVE_WINDOW, latest + length)
    if lo >= hi:
        return []
    step, tz = instrument.slot_step_minutes, timeline.tz
    candidates: list[datetime] = []
    for gap in timeline.free(lo, hi, ignore=ignore):
        if gap[1] > start:  # the first fitting start at or after the wanted one
            after = next(grid_starts((max(gap[0], start), gap[1]), length, step, tz), None)
            if after is not None and after <= latest:
                candidates.append(after)
        if gap[0] < start:  # the last fitting start before the wanted one
            before = list(grid_starts((gap[0], min(gap[1], start + length)), length, step, tz))
            if before and before[-1] < start:
                candidates.append(before[-1])
    candidates = sorted(set(candidates), key=lambda s: (abs(s - start), s))[:limit]
    return [slot(instrument.id, s, s + length) for s in candidates]


def same_time_elsewhere(
    session: Session,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    *,
    user_id: int,
    now: datetime,
    limit: int = EQUIVALENT_MAX,
) -> list[dict[str, object]]:
    """The same time on active instruments of the same category: same lab first, then same
    institution, then the rest."""
    institution_id = select(Lab.institution_id).where(Lab.id == instrument.lab_id).scalar_subquery()
    minutes = int((end - start).total_seconds() // 60)
    # The database drops what is busy or not allowed to this person, so a category of
    # hundreds costs one query; opening hours and the slot grid are checked below.
    booked = exists().where(
        col(Booking.instrument_id) == col(Instrument.id),
        col(Booking.status).in_(ACTIVE_STATUSES),
        col(Booking.start_at) < end,
        col(Booking.end_at) > start,
        col(Booking.start_at) > start - LONGEST_BOOKING,
    )
    blacked_out = exists().where(
        col(Blackout.instrument_id) == col(Instrument.id),
        col(Blackout.start_at) < end,
        col(Blackout.end_at) > start,
    )
    qualified = exists().where(
        col(Qualification.instrument_id) == col(Instrument.id),
        col(Qualification.user_id) == user_id,
        qualification_in_force(),
    )
    rows = session.exec(
        select(Instrument)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(
            Instrument.category_id == instrument.category_id,
            Instrument.id != instrument.id,
            Instrument.status == InstrumentStatus.active,
            col(Instrument.min_minutes) <= minutes,
            col(Instrument.max_minutes) >= minutes,
            or_(col(Instrument.qualification_required).is_(False), qualified),
            ~booked,
            ~blacked_out,
        )
        .order_by(
            case((col(Instrument.lab_id) == instrument.lab_id, 0), else_=1),
            case((col(Lab.institution_id) == institution_id, 0), else_=1),
            col(Instrument.id),
        )
        .limit(limit * 4)
    ).all()
    tz = zone()
    fits: list[Instrument] = []
    for other in rows:
        try:
            check_shape(other, start, end, now=now, tz=tz)
        except RuleViolation:
            continue
        fits.append(other)
    # Busy ones are gone already (the anti-joins above): only opening hours remain to check.
    timelines = load_timelines(session, fits, start, end, with_busy=False)
    out: list[dict[str, object]] = []
    for other in fits:
        assert other.id is not None
        if not timelines[other.id].conflicts(start, end):
            out.append(slot(other.id, start, end))
            if len(out) >= limit:
                break
    return out


def alternatives(
    session: Session,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    *,
    user_id: int,
    now: datetime,
    ignore: int | None = None,
) -> list[dict[str, object]]:
    """Same instrument nearest first, then the same time on equivalent instruments."""
    length = end - start
    wide = load_timeline(
        session, instrument, start - ALTERNATIVE_WINDOW, end + ALTERNATIVE_WINDOW + length
    )
    return nearest_on_instrument(wide, start, end, now=now, ignore=ignore) + same_time_elsewhere(
        session, instrument, start, end, user_id=user_id, now=now
    )


def unavailable(
    session: Session,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    conflicts: list[Busy],
    *,
    user_id: int,
    now: datetime,
    ignore: int | None = None,
    message: str | None = None,
) -> SlotUnavailable:
    """The 409 for [start, end): what is in the way and where to go instead."""
    kinds = sorted({c.kind for c in conflicts})
    return SlotUnavailable(
        message or f"the time is not free ({', '.join(kinds)})",
        conflicts=[c.public() for c in conflicts],
        alternatives=alternatives(
            session, instrument, start, end, user_id=user_id, now=now, ignore=ignore
        ),
    )
