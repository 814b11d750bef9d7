"""Time helpers: the API accepts RFC 3339 with an offset and answers in UTC (`...Z`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, PlainSerializer

from core.errors import Invalid


def to_utc_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Request fields: a time without an offset fails validation (422).
# Response fields: always written in UTC with a Z.
UTCDatetime = Annotated[AwareDatetime, PlainSerializer(to_utc_z, return_type=str)]


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
    return parsed.astimezone(UTC)


def require_interval(start: datetime, end: datetime) -> None:
    """Half-open [start, end) must be non-empty."""
    if end <= start:
        raise Invalid("end must be after start")
