"""Time helpers: the API accepts RFC 3339 with an offset and answers in UTC (`...Z`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, PlainSerializer

from core.errors import Invalid

# Times the network can mean. Past these, arithmetic of a few years (a booking horizon, a
# week's alternatives, a year's report) would leave what Python and the databases can hold,
# so a time outside them is a 422 rather than an overflow deep inside a query.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
RANGE_MESSAGE = "must be between 1900-01-01 and 3000-01-01 (UTC)"


def in_range(value: datetime) -> datetime:
    """`value` in UTC, or ValueError when it lies outside [EARLIEST, LATEST)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(RANGE_MESSAGE)
    if not EARLIEST <= utc < LATEST:
        raise ValueError(RANGE_MESSAGE)
    return value


def to_utc_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Request fields: a time without an offset fails validation (422).
# Response fields: always written in UTC with a Z.
UTCDatetime = Annotated[
    AwareDatetime, AfterValidator(in_range), PlainSerializer(to_utc_z, return_type=str)
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_aware(value: str, *, field: str = "time") -> datetime:
    """Parse an RFC 3339 time that must carry an offset; Invalid (422) otherwise."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field}: {value!r} is not an RFC 3339 time")
    if parsed.tzinfo is None:
        raise Invalid(f"{field}: {value!r} has no UTC offset")
    try:
        return in_range(parsed).astimezone(UTC)
    except ValueError:
        raise Invalid(f"{field}: {value!r} {RANGE_MESSAGE}")


def require_interval(start: datetime, end: datetime) -> None:
    """Half-open [start, end) must be non-empty."""
    if end <= start:
        raise Invalid("end must be after start")


# A time in a query string, as the schema tells clients: RFC 3339 with an offset (the
# pattern), parsed by `parse_aware` into UTC within [EARLIEST, LATEST).
RFC3339_WITH_OFFSET = (
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$"
)
_TIME_QUERY = Query(
    max_length=64,
    pattern=RFC3339_WITH_OFFSET,
    description="RFC 3339 with an offset, e.g. 2026-12-01T09:00:00+08:00",
    json_schema_extra={"format": "date-time"},
)
TimeQuery = Annotated[str, _TIME_QUERY]
OptionalTimeQuery = Annotated[str | None, _TIME_QUERY]


def local_text(value: datetime, *, with_date: bool = True) -> str:
    """A time as people of the network read it: in LABSHARE_TIMEZONE, to the minute, with
    the zone's abbreviation ("2026-12-11 08:00 CST"), never `2026-12-11T00:00:00Z`."""
    from core.settings import get_settings

    local = value.astimezone(get_settings().zone)
    shown = local.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")
    return f"{shown} {local.tzname() or ''}".strip()
