"""Interval arithmetic on an instrument's time: merging, subtracting, opening hours
expanded per local date (so a day that gains or loses an hour to daylight saving still opens
at 09:00 local time), and the slot grid in the network's zone. Pure: no database."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]
Hours = dict[int, list[tuple[time, time]]]

# A lab that closes at 23:59 (or 23:59:59) means "until midnight": no gap between days.
END_OF_DAY = time(23, 59)
ONE_DAY = timedelta(days=1)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def subtract(base: Sequence[Interval], cuts: Sequence[Interval]) -> list[Interval]:
    """`base` minus `cuts`; both sorted and merged."""
    out: list[Interval] = []
    j = 0
    for start, end in base:
        cursor = start
        while j < len(cuts) and cuts[j][1] <= cursor:
            j += 1
        k = j
        while k < len(cuts) and cuts[k][0] < end:
            if cuts[k][0] > cursor:
                out.append((cursor, cuts[k][0]))
            cursor = max(cursor, cuts[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def expand_hours(hours: Hours, start: datetime, end: datetime, tz: ZoneInfo) -> list[Interval]:
    """The open intervals within [start, end), built per local date."""
    out: list[Interval] = []
    day: date = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        for opens, closes in hours.get(day.weekday(), ()):
            s = datetime.combine(day, opens, tz).astimezone(UTC)
            e = (
                datetime.combine(day + ONE_DAY, time(0), tz)
                if closes >= END_OF_DAY
                else datetime.combine(day, closes, tz)
            ).astimezone(UTC)
            s, e = max(s, start), min(e, end)
            if s < e:
                out.append((s, e))
        day += ONE_DAY
    return merge(out)


def align_up(moment: datetime, step: int, tz: ZoneInfo) -> datetime:
    """The first time at or after `moment` on the slot grid (multiples of `step` minutes from
    local midnight). On the night clocks go back, the repeated hour's wall times are two
    instants: the first of them not before `moment` (grid_starts walked back into the first
    occurrence forever)."""
    local = moment.astimezone(tz)
    minutes = local.hour * 60 + local.minute + (1 if local.second or local.microsecond else 0)
    target = minutes + (-minutes % step)
    midnight = datetime.combine(local.date(), time(0), tz)
    if target >= 24 * 60:
        return datetime.combine(local.date() + ONE_DAY, time(0), tz).astimezone(UTC)
    wall = midnight + timedelta(minutes=target)
    found = wall.astimezone(UTC)
    if found < moment:  # the repeated hour's first occurrence: take the second
        found = wall.replace(fold=1).astimezone(UTC)
    return found


def on_grid(moment: datetime, step: int, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz)
    return not (local.second or local.microsecond) and (local.hour * 60 + local.minute) % step == 0


def grid_starts(free: Interval, length: timedelta, step: int, tz: ZoneInfo) -> Iterator[datetime]:
    """Grid-aligned starts of slots of `length` that fit inside `free`, earliest first."""
    start = align_up(free[0], step, tz)
    while start + length <= free[1]:
        yield start
        start = align_up(start + timedelta(minutes=step), step, tz)


def last_grid_start(free: Interval, length: timedelta, step: int, tz: ZoneInfo) -> datetime | None:
    """The latest grid-aligned start of a slot of `length` inside `free` (grid_starts'
    last), worked out directly rather than by walking a gap of days step by step."""
    latest = free[1] - length
    if latest < free[0]:
        return None
    local = latest.astimezone(tz)
    minutes = local.hour * 60 + local.minute
    midnight = datetime.combine(local.date(), time(0), tz)
    wall = midnight + timedelta(minutes=minutes - minutes % step)
    found = wall.replace(fold=1).astimezone(UTC)  # the later instant of a repeated hour
    if found > latest:
        found = wall.astimezone(UTC)
    if found > latest or align_up(found, step, tz) != found:
        # A wall time the clocks skip: walk the grid as grid_starts does.
        starts = list(grid_starts(free, length, step, tz))
        return starts[-1] if starts else None
    return found if found >= free[0] else None
