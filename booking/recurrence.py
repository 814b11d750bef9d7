"""Recurring bookings: an RFC 5545 RRULE expanded from the first booking, in local time."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from types import FrameType
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from booking.errors import RuleViolation
from booking.intervals import Interval

MAX_OCCURRENCES = 200
# No rule looks further than the longest horizon a lab may set (instruments.schemas): this
# also stops dateutil from searching for centuries for a rule that never matches.
MAX_SPAN = timedelta(days=3 * 365 + 1)
FREQUENCIES = {"HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_PART = re.compile(r"^[A-Z]+=[A-Za-z0-9,+\-:]+$")
_UNTIL = re.compile(r"^(\d{8})(T(\d{6})(Z?))?$")


def _until_utc(value: str, tz: ZoneInfo) -> str:
    """UNTIL in UTC as dateutil needs with a zoned start; a local or date-only UNTIL is read
    in the network's zone (a date means through the end of that day)."""
    match = _UNTIL.match(value)
    if not match:
        raise RuleViolation(f"recurrence: UNTIL={value} is not a date or date-time")
    day, _, clock, z = match.groups()
    if z:
        return value
    try:
        moment = (
            datetime.strptime(day + clock, "%Y%m%d%H%M%S")
            if clock
            else datetime.combine(datetime.strptime(day, "%Y%m%d").date(), time(23, 59, 59))
        )
    except ValueError:
        raise RuleViolation(f"recurrence: UNTIL={value} is not a valid date")
    return moment.replace(tzinfo=tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def normalise(rule: str, tz: ZoneInfo) -> str:
    """One RRULE value (an optional `RRULE:` prefix is dropped); bounded by COUNT or UNTIL."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if not text or "\n" in text or "\r" in text:
        raise RuleViolation("recurrence: give one RRULE, e.g. FREQ=WEEKLY;COUNT=10")
    parts: list[str] = []
    names: set[str] = set()
    for part in text.split(";"):
        part = part.strip()
        if not _PART.match(part):
            raise RuleViolation(f"recurrence: {part!r} is not a NAME=VALUE rule part")
        name, value = part.split("=", 1)
        if name in names:
            raise RuleViolation(f"recurrence: {name} given twice")
        names.add(name)
        if name == "DTSTART":
            raise RuleViolation(
                "recurrence: the series starts at the booking's start; drop DTSTART"
            )
        if name == "UNTIL":
            value = _until_utc(value, tz)
        if name == "FREQ" and value not in FREQUENCIES:
            raise RuleViolation(f"recurrence: FREQ must be one of {', '.join(sorted(FREQUENCIES))}")
        if name == "INTERVAL" and (not value.isdigit() or int(value) < 1):
            raise RuleViolation("recurrence: INTERVAL must be a positive whole number")
        parts.append(f"{name}={value}")
    if "FREQ" not in names:
        raise RuleViolation("recurrence: FREQ is missing")
    if not names & {"COUNT", "UNTIL"}:
        raise RuleViolation(
            f"recurrence: unbounded; add COUNT (at most {MAX_OCCURRENCES}) or UNTIL"
        )
    return ";".join(parts)


class _TooMuchWork(Exception):
    pass


# dateutil checks UNTIL only when a date matches, so a rule that can never match (Feb 30,
# or the 5th Monday of a week) would search until year 9999. We count the interpreter's
# steps while it expands and stop it far beyond what any real rule needs.
WORK_LIMIT = 400_000


def _bounded(occurrences: Iterator[datetime], bound: datetime) -> list[datetime]:
    steps = 0

    def tracer(frame: FrameType, event: str, arg: object) -> object:
        nonlocal steps
        steps += 1
        if steps > WORK_LIMIT:
            raise _TooMuchWork
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)  # type: ignore[arg-type]
    try:
        out: list[datetime] = []
        for moment in occurrences:
            if moment > bound or len(out) > MAX_OCCURRENCES:
                break
            out.append(moment)
        return out
    finally:
        sys.settrace(previous)


def expand(rule: str, start: datetime, end: datetime, tz: ZoneInfo) -> list[Interval]:
    """The occurrences, each as long as the first; wall-clock times stay put across DST."""
    text = normalise(rule, tz)
    try:
        # A zoned start makes dateutil step in local wall-clock time: 09:00 stays 09:00.
        recurrence = rrulestr(text, dtstart=start.astimezone(tz))
        starts = _bounded(iter(recurrence), start + MAX_SPAN)  # type: ignore[call-overload]
    except _TooMuchWork:
        raise RuleViolation("recurrence: the rule finds no occurrence in reasonable time")
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise RuleViolation(f"recurrence: {exc}")
    if len(starts) > MAX_OCCURRENCES:
        raise RuleViolation(f"recurrence: more than {MAX_OCCURRENCES} occurrences")
    if not starts:
        raise RuleViolation("recurrence: the rule gives no occurrence")
    length: timedelta = end - start
    return [(s.astimezone(UTC), s.astimezone(UTC) + length) for s in starts]
