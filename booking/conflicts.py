"""Why a time cannot be booked, and what to offer instead: the 409's conflicts and alternatives."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, exists, func, literal_column, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from booking.errors import InTheWay, RuleViolation, SlotUnavailable
from booking.intervals import expand_hours, grid_starts, subtract
from booking.models import ACTIVE_STATUSES, Booking
from booking.rules import check_shape
from booking.timeline import (
    LONGEST_BOOKING,
    Busy,
    Timeline,
    hours_by_instrument,
    load_timeline,
    zone,
)
from core.db import UTCDateTime, is_postgres, plain_rows
from core.timeutil import to_utc_z
from instruments.models import (
    Blackout,
    Instrument,
    InstrumentStatus,
    Lab,
    Qualification,
)

# How far either side of the wanted time a refusal looks for free slots on the same
# instrument: what the check already loaded (NEAR), so a 409 reads nothing more for them.
# Where a timeline is loaded afresh (a blackout's displaced bookings), a week.
ALTERNATIVE_WINDOW = timedelta(days=7)
NEAR = timedelta(days=2)
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
    window: timedelta = ALTERNATIVE_WINDOW,
) -> list[dict[str, object]]:
    """The nearest free slots of the same length before and after, nearest first (the
    timeline must cover `window` either side)."""
    instrument = timeline.instrument
    assert instrument.id is not None
    length = end - start
    earliest, latest = _bookable_starts(instrument, now)
    lo = max(start - window, earliest)
    hi = min(end + window, latest + length)
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


# What a candidate instrument's rules need (check_shape) and its hours cache key.
_CANDIDATE_COLUMNS = (
    "id",
    "status",
    "slot_step_minutes",
    "min_minutes",
    "max_minutes",
    "lead_minutes",
    "horizon_days",
    "updated_at",
)


def _elsewhere_statement(postgres: bool) -> Any:
    """Active instruments of a category, other than one, that are free over [:s, :e) and
    allowed to the person and the length: same lab first, then same institution. Built once
    per database kind, with bind parameters (`:now` too), so a 409 neither rebuilds nor
    recompiles it, and PostgreSQL runs it from one generic plan."""
    start, end = bindparam("s", type_=UTCDateTime()), bindparam("e", type_=UTCDateTime())
    now = bindparam("now", type_=UTCDateTime())
    instrument = Instrument.__table__.c  # type: ignore[attr-defined]
    overlap: list[Any]
    if postgres:
        # The exclusion constraint's GiST index answers "overlaps" exactly, per instrument.
        # The bounds are a literal, not a parameter: the plan a prepared statement settles
        # on must see the index's own expression, tstzrange(start_at, end_at, '[)'), or it
        # filters every active booking of each candidate (4 ms a 409; bench/booking.py).
        bounds: Any = literal_column("'[)'")
        overlap = [
            func.tstzrange(Booking.start_at, Booking.end_at, bounds).op("&&")(
                func.tstzrange(start, end, bounds)
            )
        ]
    else:
        overlap = [
            col(Booking.start_at) < end,
            col(Booking.end_at) > start,
            col(Booking.start_at) > bindparam("since", type_=UTCDateTime()),
        ]
    qualified = exists().where(
        col(Qualification.instrument_id) == instrument.id,
        col(Qualification.user_id) == bindparam("user_id"),
        col(Qualification.revoked_at).is_(None),
        or_(col(Qualification.expires_at).is_(None), col(Qualification.expires_at) > now),
    )
    # The order people want them in: same lab, then same institution, then the rest. The
    # nearest few candidates come first and only they are probed for bookings and
    # blackouts, and the rank travels with them so nothing is joined twice.
    same_institution = (
        sa_select(col(Lab.institution_id))
        .where(col(Lab.id) == bindparam("lab_id"))
        .scalar_subquery()
    )
    rank = case(
        (instrument.lab_id == bindparam("lab_id"), 0),
        (col(Lab.institution_id) == same_institution, 1),
        else_=2,
    ).label("rank")
    candidates = (
        sa_select(*(instrument[name] for name in _CANDIDATE_COLUMNS), rank)
        .select_from(Instrument.__table__.join(Lab.__table__, col(Lab.id) == instrument.lab_id))  # type: ignore[attr-defined]
        .where(
            instrument.category_id == bindparam("category_id"),
            instrument.id != bindparam("instrument_id"),
            instrument.status == InstrumentStatus.active,
            instrument.min_minutes <= bindparam("minutes"),
            instrument.max_minutes >= bindparam("minutes"),
            or_(instrument.qualification_required.is_(False), qualified),
        )
        .order_by(rank, instrument.id)
        .limit(bindparam("candidates"))
        .subquery("candidates")
    )
    booked = exists().where(
        col(Booking.instrument_id) == candidates.c.id,
        col(Booking.status).in_(ACTIVE_STATUSES),
        *overlap,
    )
    blacked_out = exists().where(
        col(Blackout.instrument_id) == candidates.c.id,
        col(Blackout.start_at) < end,
        col(Blackout.end_at) > start,
    )
    return (
        sa_select(*(candidates.c[name] for name in _CANDIDATE_COLUMNS))
        .where(~booked, ~blacked_out)
        .order_by(candidates.c.rank, candidates.c.id)
        .limit(bindparam("limit"))
    )


_ELSEWHERE = {True: _elsewhere_statement(True), False: _elsewhere_statement(False)}


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
    # The database drops what is busy or not allowed to this person, so a category of
    # hundreds costs one query; opening hours and the slot grid are checked below.
    postgres = is_postgres(session)
    params: dict[str, Any] = {
        "s": start,
        "e": end,
        "now": now,
        "user_id": user_id,
        "category_id": instrument.category_id,
        "instrument_id": instrument.id,
        "minutes": int((end - start).total_seconds() // 60),
        "lab_id": instrument.lab_id,
        # Most of a category is free at any one time and open at most times: a few times
        # the answer's size is plenty to find it among.
        "limit": limit * 3,
        "candidates": limit * 5,
    }
    if not postgres:
        params["since"] = start - LONGEST_BOOKING
    rows = plain_rows(session, _ELSEWHERE[postgres], params)
    tz = zone()
    fits = []
    for other in rows:
        try:
            check_shape(other, start, end, now=now, tz=tz)
        except RuleViolation:
            continue
        fits.append(other)
    # Busy ones are gone already (the anti-joins above): only opening hours remain to check.
    hours = hours_by_instrument(session, fits)
    out: list[dict[str, object]] = []
    for other in fits:
        if not subtract([(start, end)], expand_hours(hours.get(other.id, {}), start, end, tz)):
            out.append(slot(other.id, start, end))
            if len(out) >= limit:
                break
    return out


def _nearest(
    session: Session,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    ignore: int | None,
    near: Timeline | None,
) -> list[dict[str, object]]:
    """The nearest slots on the instrument, from the check's own timeline (NEAR either
    side), or from a week's when the caller loaded none."""
    if near is not None:
        return nearest_on_instrument(near, start, end, now=now, ignore=ignore, window=NEAR)
    length = end - start
    wide = load_timeline(
        session, instrument, start - ALTERNATIVE_WINDOW, end + ALTERNATIVE_WINDOW + length
    )
    return nearest_on_instrument(wide, start, end, now=now, ignore=ignore)


def alternatives(
    session: Session,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    *,
    user_id: int,
    now: datetime,
    ignore: int | None = None,
    timeline: Timeline | None = None,
) -> list[dict[str, object]]:
    """Same instrument nearest first, then the same time on equivalent instruments."""
    return _nearest(
        session, instrument, start, end, now=now, ignore=ignore, near=timeline
    ) + same_time_elsewhere(session, instrument, start, end, user_id=user_id, now=now)


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
    timeline: Timeline | None = None,
    raced: bool = False,
) -> SlotUnavailable:
    """The 409 for [start, end): what is in the way and where to go instead (`timeline`:
    what the check loaded, a day either side)."""
    kinds = sorted({c.kind for c in conflicts})
    return SlotUnavailable(
        message or f"the time is not free ({', '.join(kinds)})",
        conflicts=[c.public() for c in conflicts],
        in_the_way=[
            InTheWay(c.kind, c.start, c.end, mine=c.user_id is not None and c.user_id == user_id)
            for c in conflicts
        ],
        raced=raced,
        alternatives=alternatives(
            session,
            instrument,
            start,
            end,
            user_id=user_id,
            now=now,
            ignore=ignore,
            timeline=timeline,
        ),
    )
