"""Service-level checks: interval arithmetic, local hours across DST, the database's last word."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from booking.errors import RuleViolation, SlotUnavailable
from booking.intervals import align_up, expand_hours, merge, on_grid, subtract
from booking.models import Booking
from booking.placement import new_booking, write
from booking.recurrence import expand
from booking.rules import iso_weeks
from core.timeutil import utcnow
from tests.booking.helpers import at
from tests.factories import create_instrument, create_user

BERLIN = ZoneInfo("Europe/Berlin")
U = UTC


def t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 3, day, hour, minute, tzinfo=U)


def test_merge_and_subtract():
    assert merge([(t(1, 9), t(1, 10)), (t(1, 10), t(1, 11)), (t(1, 8), t(1, 9, 30))]) == [
        (t(1, 8), t(1, 11))
    ]
    assert subtract([(t(1, 8), t(1, 18))], [(t(1, 7), t(1, 9)), (t(1, 12), t(1, 13))]) == [
        (t(1, 9), t(1, 12)),
        (t(1, 13), t(1, 18)),
    ]
    assert subtract([(t(1, 8), t(1, 9))], [(t(1, 8), t(1, 9))]) == []


def test_hours_expand_per_local_date_across_dst():
    hours = {d: [(time(9), time(17))] for d in range(7)}
    opened = expand_hours(hours, t(27, 0), t(30, 0), BERLIN)
    assert opened == [(t(27, 8), t(27, 16)), (t(28, 7), t(28, 15)), (t(29, 7), t(29, 15))]
    # Closing at 23:59 means midnight: consecutive days join without a gap.
    allday = {d: [(time(0), time(23, 59, 59))] for d in range(7)}
    assert expand_hours(allday, t(27, 0), t(30, 0), BERLIN) == [(t(27, 0), t(30, 0))]


def test_grid_counts_from_local_midnight():
    shanghai = ZoneInfo("Asia/Shanghai")
    moment = datetime(2027, 3, 1, 9, 10, tzinfo=shanghai)
    assert align_up(moment, 30, shanghai) == datetime(2027, 3, 1, 9, 30, tzinfo=shanghai)
    assert align_up(datetime(2027, 3, 1, 23, 50, tzinfo=shanghai), 45, shanghai) == datetime(
        2027, 3, 2, 0, 0, tzinfo=shanghai
    )
    assert on_grid(datetime(2027, 3, 29, 9, 45, tzinfo=BERLIN), 15, BERLIN)
    assert not on_grid(datetime(2027, 3, 29, 9, 45, 1, tzinfo=BERLIN), 15, BERLIN)


def test_iso_weeks_are_local():
    weeks = iso_weeks(t(28, 12), t(29, 12), BERLIN)
    assert [w[0].astimezone(BERLIN).strftime("%G-W%V") for w in weeks] == ["2027-W12", "2027-W13"]


def test_recurrence_bounds():
    start = datetime(2027, 3, 22, 9, tzinfo=BERLIN)
    end = start + timedelta(hours=1)
    assert [s.hour for s, _ in expand("FREQ=WEEKLY;COUNT=2", start, end, BERLIN)] == [8, 7]
    for bad in (
        "FREQ=WEEKLY",
        "FREQ=DAILY;COUNT=201",
        "COUNT=3",
        "FREQ=DAILY;COUNT=2;DTSTART=x",
        "FREQ=MINUTELY;COUNT=2",
        "FREQ=WEEKLY;COUNT=2\nRDATE:20270101",
        "FREQ=WEEKLY;UNTIL=soon",
    ):
        with pytest.raises(RuleViolation):
            expand(bad, start, end, BERLIN)


def test_database_refuses_an_overlap_the_check_missed(session: Session, backend: str):
    """A twin request that passed its check at the same moment: PostgreSQL's exclusion
    constraint answers, and we turn it into the same 409."""
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE instead")
    instrument = create_instrument(session)
    first, second = create_user(session), create_user(session)
    now = utcnow()
    session.add(
        new_booking(
            instrument, user_id=first.id, start=at(2, 9), end=at(2, 10), purpose="", now=now
        )
    )
    session.commit()
    twin = new_booking(
        instrument, user_id=second.id, start=at(2, 9, 30), end=at(2, 10, 30), purpose="", now=now
    )
    with pytest.raises(SlotUnavailable) as caught:
        write(session, twin, instrument, now=now)
    assert caught.value.extra["conflicts"][0]["kind"] == "booking"
    session.rollback()
    assert len(session.exec(select(Booking)).all()) == 1


def test_a_blackout_that_came_in_after_the_busy_time_was_read_still_stops_a_booking(
    session: Session, backend: str
):
    """On PostgreSQL the booking's first statement reads the instrument's busy time on a
    snapshot taken a moment before it holds the lock (booking.service.signed_in_at_instrument).
    A booking committed in that moment meets the exclusion constraint; a blackout has none,
    so the insert looks for one again and, finding it, the check runs again on what is
    there now: a 409 naming the blackout, and nothing written."""
    if backend != "postgresql":
        pytest.skip("SQLite's writers take turns from their transaction's start")
    from booking.placement import place
    from booking.timeline import timeline_of
    from core.events import Event
    from instruments.models import Blackout, BlackoutKind
    from instruments.service import instrument_get

    instrument = create_instrument(session)
    person = create_user(session)
    session.add(
        Blackout(
            instrument_id=instrument.id,
            start_at=at(2, 9),
            end_at=at(2, 12),
            kind=BlackoutKind.maintenance,
            reason="service visit",
        )
    )
    session.commit()
    events_before = len(session.exec(select(Event)).all())
    locked = instrument_get(session, instrument.id, for_update=True)
    # What the first statement would have read had the blackout come in just after its
    # snapshot: nothing in the way.
    stale = timeline_of(session, locked, [], read_before_lock=True)
    with pytest.raises(SlotUnavailable) as caught:
        place(session, locked, user_id=person.id, start=at(2, 10), end=at(2, 11), now=utcnow(),
              timeline=stale)  # fmt: skip
    assert [c["kind"] for c in caught.value.extra["conflicts"]] == ["blackout"]
    session.rollback()
    assert session.exec(select(Booking)).all() == []
    assert len(session.exec(select(Event)).all()) == events_before


@pytest.mark.parametrize(
    "zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Shanghai"]
)
def test_the_slot_grid_walks_forward_through_clock_changes(zone: str) -> None:
    """On the night clocks go back, grid_starts walked from the repeated hour's second
    occurrence back into its first, forever: a 409 whose window spanned that night (the
    nearest slots before the wanted time) never answered. The grid only moves forward now,
    and last_grid_start finds the last start of a gap without walking it."""
    import random

    from booking.intervals import grid_starts, last_grid_start

    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    nights = [(2026, 10, 25), (2026, 11, 1), (2026, 4, 5), (2026, 3, 29), (2026, 3, 8)]
    for night in [*nights, (2026, 6, 1)]:
        around = datetime(*night, tzinfo=UTC) - timedelta(hours=14)
        for _ in range(200):
            lo = around + timedelta(minutes=rng.randrange(48 * 60))
            hi = lo + timedelta(minutes=rng.randrange(30 * 60))
            step = rng.choice((5, 15, 30, 60, 90))
            length = timedelta(minutes=step * rng.randint(1, 4))
            starts = []
            for start in grid_starts((lo, hi), length, step, tz):
                starts.append(start)
                assert len(starts) <= 30 * 60 // 5 + 2, "the grid walked backwards"
            assert starts == sorted(set(starts))
            assert all(on_grid(s, step, tz) and lo <= s and s + length <= hi for s in starts)
            last = last_grid_start((lo, hi), length, step, tz)
            if night == (2026, 6, 1):
                assert last == (starts[-1] if starts else None)
            elif last is not None:  # the repeated hour may hold one grid_starts steps over
                assert on_grid(last, step, tz) and lo <= last and last + length <= hi
                assert not starts or last >= starts[-1]
            else:
                assert not starts
