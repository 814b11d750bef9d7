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
