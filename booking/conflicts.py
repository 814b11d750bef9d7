"""Why a time cannot be booked, and what to offer instead: the 409's conflicts and alternatives."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from booking.elsewhere import same_time_elsewhere, slot
from booking.errors import InTheWay, SlotUnavailable
from booking.intervals import grid_starts, last_grid_start
from booking.timeline import Busy, Timeline, load_timeline
from instruments.models import Instrument

# How far either side of the wanted time a refusal looks for free slots on the same
# instrument: what the check already loaded (NEAR), so a 409 reads nothing more for them.
# Where a timeline is loaded afresh (a blackout's displaced bookings), a week.
ALTERNATIVE_WINDOW = timedelta(days=7)
NEAR = timedelta(days=2)
SAME_INSTRUMENT_MAX = 4


def near_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """What a booking's check reads around [start, end): NEAR either side."""
    return start - NEAR, end + NEAR


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
            before = last_grid_start((gap[0], min(gap[1], start + length)), length, step, tz)
            if before is not None and before < start:
                candidates.append(before)
    candidates = sorted(set(candidates), key=lambda s: (abs(s - start), s))[:limit]
    return [slot(instrument.id, s, s + length) for s in candidates]


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
