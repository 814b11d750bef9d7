"""When instruments are free: one instrument's availability, and free slots across a category."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import cast

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from booking.errors import RuleViolation
from booking.intervals import grid_starts, subtract
from booking.models import BookingStatus
from booking.schemas import Availability, BusyOut, IntervalOut, Slot, Slots
from booking.timeline import Timeline, load_timeline, load_timelines
from core.db import plain_rows
from core.errors import Invalid
from core.timeutil import utcnow
from instruments.errors import UnknownCode
from instruments.models import Institution, Instrument, InstrumentStatus, Lab
from instruments.service import category_ids, instrument_get

# A quarter: enough for a 90-day calendar view, small enough to answer fast.
MAX_WINDOW = timedelta(days=93)
MAX_SLOTS = 200


def _check_window(start: datetime, end: datetime) -> None:
    if end <= start:
        raise Invalid("end must be after start")
    if end - start > MAX_WINDOW:
        raise Invalid(f"the window may span at most {MAX_WINDOW.days} days")


def availability(
    session: Session, *, instrument_id: int, start: datetime, end: datetime
) -> Availability:
    """Free and busy time of one instrument in [start, end): opening hours, blackouts (imported
    busy time included) and active bookings, merged."""
    _check_window(start, end)
    instrument = instrument_get(session, instrument_id)
    timeline = load_timeline(session, instrument, start, end)
    busy = [
        BusyOut(start=s, end=e, kind="closed")
        for s, e in subtract([(start, end)], timeline.open(start, end))
    ]
    busy += [
        BusyOut(
            start=max(b.start, start),
            end=min(b.end, end),
            kind=b.kind,
            pending=b.status == BookingStatus.pending,
        )
        for b in timeline.overlapping(start, end)
    ]
    busy.sort(key=lambda b: (b.start, b.end))
    return Availability(
        instrument_id=instrument_id,
        start=start,
        end=end,
        free=[IntervalOut(start=s, end=e) for s, e in timeline.free(start, end)],
        busy=busy,
    )


# How far ahead an instrument page looks for the first time one could book.
FIRST_FREE_WITHIN = timedelta(days=28)


def first_bookable(
    session: Session, instrument: Instrument, *, now: datetime | None = None
) -> datetime | None:
    """The start of the earliest slot one could book on the instrument now (its shortest
    length, on its grid, past the lead time, within its horizon), looking four weeks
    ahead; None if there is none. Where its page's calendar opens."""
    now = now or utcnow()
    start = now + timedelta(minutes=instrument.lead_minutes)
    end = start + FIRST_FREE_WITHIN
    timeline = load_timeline(session, instrument, start, end)
    length = timedelta(minutes=instrument.min_minutes)
    first = next(_slots_of(timeline, start, end, length, now), None)
    return first[0] if first else None


@dataclass(frozen=True, slots=True)
class _Candidate:
    """What slot search needs of an instrument, read as plain columns (no ORM objects for
    hundreds of rows)."""

    id: int
    code: str
    name: str
    slot_step_minutes: int
    lead_minutes: int
    horizon_days: int
    updated_at: datetime


def _candidates(
    session: Session, *, category: str, institution: str | None, minutes: int
) -> list[Instrument]:
    query = sa_select(
        col(Instrument.id),
        col(Instrument.code),
        col(Instrument.name),
        col(Instrument.slot_step_minutes),
        col(Instrument.lead_minutes),
        col(Instrument.horizon_days),
        col(Instrument.updated_at),
    ).where(
        col(Instrument.category_id).in_(category_ids(session, category)),
        col(Instrument.status) == InstrumentStatus.active,
        col(Instrument.min_minutes) <= minutes,
        col(Instrument.max_minutes) >= minutes,
    )
    if institution:
        institution_id = session.exec(
            select(Institution.id).where(Institution.code == institution)
        ).first()
        if institution_id is None:
            raise UnknownCode("institution", institution)
        query = query.join(Lab, col(Lab.id) == Instrument.lab_id).where(
            col(Lab.institution_id) == institution_id
        )
    rows = [_Candidate(*row) for row in plain_rows(session, query)]
    # Timelines only read these fields; the cast keeps one Timeline type for both uses.
    return [cast(Instrument, c) for c in rows if minutes % c.slot_step_minutes == 0]


def _slots_of(
    timeline: Timeline, start: datetime, end: datetime, length: timedelta, now: datetime
) -> Iterator[tuple[datetime, int]]:
    """Back-to-back slots of `length` in the instrument's free time, earliest first."""
    instrument = timeline.instrument
    assert instrument.id is not None
    lo = max(start, now + timedelta(minutes=instrument.lead_minutes))
    latest_start = min(end - length, now + timedelta(days=instrument.horizon_days))
    if lo > latest_start:
        return
    step = instrument.slot_step_minutes
    for gap in timeline.free(lo, min(end, latest_start + length)):
        cursor = gap[0]
        while True:
            s = next(grid_starts((cursor, gap[1]), length, step, timeline.tz), None)
            if s is None or s > latest_start:
                break
            yield s, instrument.id
            cursor = s + length


# Instruments whose busy time is read at once while slots are gathered.
SLOT_CHUNK = 64


def _earliest_slots(
    session: Session,
    instruments: Sequence[Instrument],
    start: datetime,
    end: datetime,
    length: timedelta,
    now: datetime,
    limit: int,
) -> list[tuple[datetime, int]]:
    """The earliest `limit` (start, instrument id) slots in [start, end), reading busy time
    only for the instruments that can still place one.

    Without bookings an instrument's first slot follows from its hours and rules alone: a
    lower bound of its real first slot, the same for the many instruments that share hours
    and rules. Instruments are taken in the order of that bound, a chunk at a time; once
    `limit` slots are found that all come before the next instrument's bound, no later
    instrument can place one among them. On the 12,600-instrument network this reads the
    bookings of a few dozen of a category's 1,300 instruments, not all of them.
    """
    bare = load_timelines(session, instruments, start, end, with_busy=False)
    bounds: dict[tuple[object, ...], datetime | None] = {}
    order: list[tuple[datetime, int]] = []
    for instrument_id, timeline in bare.items():
        i = timeline.instrument
        rules = (timeline.hours_key, i.lead_minutes, i.horizon_days, i.slot_step_minutes)
        if rules not in bounds:
            first = next(_slots_of(timeline, start, end, length, now), None)
            bounds[rules] = first[0] if first else None
        bound = bounds[rules]
        if bound is not None:
            order.append((bound, instrument_id))
    order.sort()
    by_id = {i.id: i for i in instruments}
    found: list[tuple[datetime, int]] = []
    for at in range(0, len(order), SLOT_CHUNK):
        chunk = order[at : at + SLOT_CHUNK]
        if len(found) >= limit and chunk[0] > found[-1]:
            break
        timelines = load_timelines(session, [by_id[i] for _, i in chunk], start, end)
        theirs = heapq.merge(*(_slots_of(t, start, end, length, now) for t in timelines.values()))
        found = list(islice(heapq.merge(found, islice(theirs, limit)), limit))
    return found


def slots_find(
    session: Session,
    *,
    category: str,
    start: datetime,
    end: datetime,
    duration_minutes: int,
    institution: str | None = None,
    limit: int = 20,
    now: datetime | None = None,
) -> Slots:
    """The earliest free slots of that length across a category's active instruments, in a
    few set-based queries however many instruments the category holds."""
    now = now or utcnow()
    _check_window(start, end)
    if not 1 <= limit <= MAX_SLOTS:
        raise Invalid(f"limit must be between 1 and {MAX_SLOTS}")
    if duration_minutes < 1 or duration_minutes > 31 * 24 * 60:
        raise RuleViolation("duration_minutes must be between 1 and 44640")
    length = timedelta(minutes=duration_minutes)
    start = max(start, now)
    if start >= end:
        return Slots(items=[])
    instruments = _candidates(
        session, category=category, institution=institution, minutes=duration_minutes
    )
    by_id = {i.id: i for i in instruments}
    # Most instruments are free soon: look at a short window first and widen it only when
    # it holds too few slots. Slots wholly inside a window are exact, so the earliest
    # `limit` of them are the earliest overall.
    span = max(timedelta(days=1), 4 * length)
    while True:
        window_end = min(end, start + span)
        found = _earliest_slots(session, instruments, start, window_end, length, now, limit)
        if len(found) >= limit or window_end >= end:
            break
        span *= 4
    items = [
        Slot(
            instrument_id=instrument_id,
            instrument_code=by_id[instrument_id].code,
            instrument_name=by_id[instrument_id].name,
            start=slot_start,
            end=slot_start + length,
        )
        for slot_start, instrument_id in found
    ]
    return Slots(items=items)


def next_free(
    session: Session,
    instrument_ids: Sequence[int],
    *,
    within: timedelta = timedelta(days=14),
    now: datetime | None = None,
) -> dict[int, datetime]:
    """When each active instrument can next be booked for its shortest booking, if within
    `within` from now: what a catalog result shows beside the instrument."""
    now = now or utcnow()
    if not instrument_ids:
        return {}
    instruments = session.exec(
        select(Instrument).where(
            col(Instrument.id).in_(list(instrument_ids)),
            col(Instrument.status) == InstrumentStatus.active,
        )
    ).all()
    timelines = load_timelines(session, instruments, now, now + within)
    out: dict[int, datetime] = {}
    for instrument in instruments:
        assert instrument.id is not None
        length = timedelta(minutes=instrument.min_minutes)
        first = next(_slots_of(timelines[instrument.id], now, now + within, length, now), None)
        if first is not None:
            out[instrument.id] = first[0]
    return out
