"""Billing months: `YYYY-MM` in the network's time zone, as half-open UTC bounds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from billing.errors import BadPeriod
from core.settings import get_settings

PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


def parse_period(value: str) -> tuple[int, int]:
    """`"2026-11"` -> `(2026, 11)`; BadPeriod (422) otherwise."""
    if not isinstance(value, str) or not re.fullmatch(PERIOD_PATTERN, value):
        raise BadPeriod(value)
    year, month = int(value[:4]), int(value[5:])
    if year < 2000 or year > 2200:
        raise BadPeriod(value)
    return year, month


def period_bounds(value: str) -> tuple[datetime, datetime]:
    """The month's [start, end) in UTC, the month being local to LABSHARE_TIMEZONE."""
    year, month = parse_period(value)
    zone = get_settings().zone
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def period_first_day(value: str) -> date:
    year, month = parse_period(value)
    return date(year, month, 1)


def period_of(moment: datetime) -> str:
    """The billing month a UTC time falls in, in the network's time zone."""
    local = moment.astimezone(get_settings().zone)
    return f"{local.year:04d}-{local.month:02d}"
