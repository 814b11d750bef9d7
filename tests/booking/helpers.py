"""Shared helpers for booking tests: local times in the network's zone, a day ahead or more."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from core.settings import get_settings


def day(offset: int = 2) -> date:
    """A local date `offset` days from today."""
    return datetime.now(get_settings().zone).date() + timedelta(days=offset)


def at(offset: int, hour: int, minute: int = 0) -> datetime:
    """A local time `offset` days ahead, zoned."""
    return datetime.combine(day(offset), time(hour, minute), get_settings().zone)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def body(instrument_id: int, start: datetime, end: datetime, **extra: object) -> dict:
    return {"instrument_id": instrument_id, "start": iso(start), "end": iso(end), **extra}


def z(moment: datetime) -> str:
    """How the API writes a time: UTC with a Z."""
    from core.timeutil import to_utc_z

    return to_utc_z(moment)
