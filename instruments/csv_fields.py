"""Text forms of the catalog's CSV fields: amounts, booleans, weekly hours and rate lists.

Weekly hours read `mon-fri 08:30-12:00 14:00-17:30; sat 09:00-17:00` (days as ranges or
comma lists, then one or more intervals in the network's time zone). Rates read
`internal 150.00/hour; academic 300.00/hour; company 480.00/sample`, in major units of
the network currency. Each parser raises ValueError with a reason a person can act on.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from instruments.models import PayerClass, RateUnit

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}


def parse_bool(text: str, field: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{field}: {text!r} is not true or false")


def parse_int(text: str, field: str, *, optional: bool = False) -> int | None:
    value = text.strip()
    if not value:
        if optional:
            return None
        raise ValueError(f"{field}: a whole number is required")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a whole number")


def parse_amount(text: str, field: str, exponent: int) -> int:
    """`"1250.50"` in major units -> minor units; at most `exponent` decimals, not negative."""
    value = text.strip().replace(",", "")
    if not value:
        return 0
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{field}: {text!r} is not an amount")
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{field}: {text!r} must be a non-negative amount")
    minor = amount.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{field}: {text!r} has more than {exponent} decimals")
    if minor >= 10**15:
        raise ValueError(f"{field}: {text!r} is implausibly large")
    return int(minor)


def format_amount(minor: int, exponent: int) -> str:
    if exponent == 0:
        return str(minor)
    units, rest = divmod(minor, 10**exponent)
    return f"{units}.{rest:0{exponent}d}"


def _parse_days(spec: str) -> list[int]:
    days: list[int] = []
    for part in spec.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(end not in DAYS for end in ends):
            raise ValueError(f"opening_hours: {part!r} is not a day or range like mon-fri")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        if last < first:
            raise ValueError(f"opening_hours: {part!r} runs backwards")
        days.extend(range(first, last + 1))
    return days


def _parse_interval(text: str) -> tuple[time, time]:
    match = _INTERVAL.match(text)
    if not match:
        raise ValueError(f"opening_hours: {text!r} is not an interval like 08:30-17:30")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        opens, closes = time(h1, m1), time(h2, m2)
    except ValueError:
        raise ValueError(f"opening_hours: {text!r} is not a time of day")
    if opens >= closes:
        raise ValueError(f"opening_hours: {text!r} closes before it opens")
    return opens, closes


def parse_hours(text: str) -> list[tuple[int, time, time]]:
    """Weekly hours as (weekday, opens, closes), Monday = 0; overlaps are refused."""
    intervals: list[tuple[int, time, time]] = []
    for clause in filter(None, (c.strip() for c in text.lower().split(";"))):
        words = clause.split()
        if len(words) < 2:
            raise ValueError(f"opening_hours: {clause!r} needs days then intervals")
        spans = [_parse_interval(w) for w in words[1:]]
        intervals.extend((day, o, c) for day in _parse_days(words[0]) for o, c in spans)
    intervals.sort()
    for (d1, _, c1), (d2, o2, _) in pairwise(intervals):
        if d1 == d2 and o2 < c1:
            raise ValueError(f"opening_hours: intervals overlap on {DAYS[d1]}")
    return intervals


def _day_spec(days: list[int]) -> str:
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)


def format_hours(intervals: list[tuple[int, time, time]]) -> str:
    """The inverse of parse_hours, grouping days that share the same intervals."""
    by_day: dict[int, list[str]] = {}
    for day, opens, closes in sorted(intervals):
        by_day.setdefault(day, []).append(f"{opens:%H:%M}-{closes:%H:%M}")
    groups: dict[tuple[str, ...], list[int]] = {}
    for day, spans in by_day.items():
        groups.setdefault(tuple(spans), []).append(day)
    return "; ".join(f"{_day_spec(days)} {' '.join(spans)}" for spans, days in groups.items())


def parse_rates(text: str, exponent: int) -> list[tuple[PayerClass, RateUnit, int]]:
    """Rates as (payer class, unit, minor units); one per class and unit."""
    rates: list[tuple[PayerClass, RateUnit, int]] = []
    seen: set[tuple[PayerClass, RateUnit]] = set()
    for clause in filter(None, (c.strip() for c in text.split(";"))):
        words = clause.split()
        if len(words) != 2 or "/" not in words[1]:
            raise ValueError(f"rates: {clause!r} is not like 'academic 300.00/hour'")
        amount_text, unit_text = words[1].rsplit("/", 1)
        try:
            payer, unit = PayerClass(words[0].lower()), RateUnit(unit_text.lower())
        except ValueError:
            raise ValueError(
                f"rates: {clause!r}: the class is one of {', '.join(PayerClass)} "
                f"and the unit one of {', '.join(RateUnit)}"
            )
        if (payer, unit) in seen:
            raise ValueError(f"rates: two {payer.value} rates per {unit.value}")
        seen.add((payer, unit))
        rates.append((payer, unit, parse_amount(amount_text, "rates", exponent)))
    return rates


def format_rates(rates: list[tuple[PayerClass, RateUnit, int]], exponent: int) -> str:
    return "; ".join(
        f"{payer.value} {format_amount(amount, exponent)}/{unit.value}"
        for payer, unit, amount in rates
    )
