"""Periods: a month (`YYYY-MM`) or a year (`YYYY`) in the network's time zone.

The one home of the concept that billing (monthly invoices), settlement and KPIs (months),
reports (years), the pages' month pickers and the demo's history all count in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from core.errors import Invalid
from core.settings import get_settings
from core.timeutil import utcnow

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
PERIOD_PATTERN = MONTH_PATTERN  # the month a billing period is (kept: forms and queries use it)
_YEAR_OR_MONTH = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
FIRST_YEAR, LAST_YEAR = 2000, 2200


class BadPeriod(Invalid):
    def __init__(self, value: object, *, allow_year: bool = False) -> None:
        shape = (
            "a month written YYYY-MM or a year written YYYY"
            if allow_year
            else ("a month written YYYY-MM")
        )
        super().__init__(f"period {value!r} is not {shape} (years {FIRST_YEAR}-{LAST_YEAR})")


@dataclass(frozen=True)
class Period:
    """A month or a year: its label, its half-open UTC bounds, and the months it spans."""

    label: str
    start: datetime
    end: datetime
    months: tuple[str, ...]

    @classmethod
    def parse(cls, value: object, *, allow_year: bool = False) -> Period:
        """The period a label names; BadPeriod (422) when it names none."""
        if not isinstance(value, str) or not _YEAR_OR_MONTH.match(value):
            raise BadPeriod(value, allow_year=allow_year)
        if (len(value) == 4 and not allow_year) or not FIRST_YEAR <= int(value[:4]) <= LAST_YEAR:
            raise BadPeriod(value, allow_year=allow_year)
        if len(value) == 7:
            start, end = _month_bounds(int(value[:4]), int(value[5:]))
            return cls(value, start, end, (value,))
        year = int(value)
        months = tuple(f"{value}-{m:02d}" for m in range(1, 13))
        return cls(value, _month_bounds(year, 1)[0], _month_bounds(year, 12)[1], months)


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    zone = get_settings().zone
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def parse_period(value: str) -> tuple[int, int]:
    """`"2026-11"` -> `(2026, 11)`; BadPeriod (422) otherwise."""
    period = Period.parse(value)
    return int(period.label[:4]), int(period.label[5:])


def period_bounds(value: str) -> tuple[datetime, datetime]:
    """The month's [start, end) in UTC, the month being local to LABSHARE_TIMEZONE."""
    period = Period.parse(value)
    return period.start, period.end


def period_first_day(value: str) -> date:
    year, month = parse_period(value)
    return date(year, month, 1)


def period_of(moment: datetime) -> str:
    """The month a UTC time falls in, in the network's time zone."""
    local = moment.astimezone(get_settings().zone)
    return f"{local.year:04d}-{local.month:02d}"


def _shift(label: str, months: int) -> str:
    index = int(label[:4]) * 12 + int(label[5:]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def last_month(now: datetime | None = None) -> str:
    """The latest finished month before `now`, `YYYY-MM`, in the network's zone."""
    return _shift(period_of(now or utcnow()), -1)


def months_back(period: str, count: int) -> list[str]:
    """`count` months ending with `period`, oldest first."""
    parse_period(period)
    return [_shift(period, -n) for n in range(count - 1, -1, -1)]


def months_range(first: str, last: str) -> list[Period]:
    """Every month from `first` to `last` (both `YYYY-MM`, inclusive), in order."""
    start, end = Period.parse(first), Period.parse(last)
    out = [start]
    while out[-1].label < end.label:
        out.append(Period.parse(_shift(out[-1].label, 1)))
    return out
