"""Reading a lab's .ics: parse it, expand its recurrences, and keep the busy occurrences.

Pure work on bytes, no database; every refusal is a 4xx with the reason. The limits keep
an upload or a fetched file from costing more than about a second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from booking.calendars.format import UID_DOMAIN
from core.errors import AppError, Invalid
from core.settings import get_settings
from instruments.models import Instrument

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_EVENTS = 5000
# Rough count of recurrence steps we are willing to walk (dateutil starts at DTSTART and
# tries every combination of the BY parts): about 3.6 us a step here, so a third of a second.
MAX_EXPANSION_STEPS = 100_000
OWN_UID_SUFFIX = f"@{UID_DOMAIN}"
# Imported busy time reaches from a day back (so today's events stay) to the booking horizon.
PAST_DAYS = 1
_FREQ_SECONDS = {
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}
# Every BY part multiplies the candidates dateutil generates per period (BYSETPOS only picks
# among them, so it does not count).
_BY_PARTS = (
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
)


class CalendarRejected(Invalid):
    """The body is not a calendar we can import; the message says why."""


class CalendarTooLarge(AppError):
    status_code = 413


@dataclass(frozen=True, order=True)
class BusyEvent:
    """One busy occurrence from an imported calendar, in UTC."""

    start: datetime
    end: datetime
    uid: str


# -------------------------------------------------------------------------- parse and expand


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def parse_calendar(data: bytes) -> icalendar.Calendar:
    """The VCALENDAR in `data`; CalendarRejected or CalendarTooLarge with a reason otherwise."""
    if len(data) > MAX_BODY_BYTES:
        raise CalendarTooLarge(
            f"the calendar is {len(data):,} bytes; at most {MAX_BODY_BYTES:,} are accepted"
        )
    if not data.strip():
        raise CalendarRejected("the calendar is empty")
    try:
        cal = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError, but odd input finds others
        raise CalendarRejected(f"not an iCalendar file: {_first_line(exc)}")
    if not isinstance(cal, icalendar.Calendar) or cal.name != "VCALENDAR":
        found = getattr(cal, "name", "?")
        raise CalendarRejected(f"not an iCalendar file: expected VCALENDAR, found {found}")
    count = len(cal.walk("VEVENT"))
    if count > MAX_EVENTS:
        raise CalendarTooLarge(f"the calendar has {count:,} events; at most {MAX_EVENTS:,}")
    return cal


def _calendar_zone(cal: icalendar.Calendar, default: tzinfo) -> tzinfo:
    # Google and Outlook name the calendar's zone in X-WR-TIMEZONE; floating times mean it.
    name = str(cal.get("X-WR-TIMEZONE", "")).strip()
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return default


def _as_utc(value: date | datetime, zone: tzinfo) -> datetime:
    if not isinstance(value, datetime):  # an all-day date: midnight where the lab is
        value = datetime.combine(value, time(0), zone)
    elif value.tzinfo is None:  # floating time: the calendar's zone
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _rrules(event: icalendar.Component) -> list[Any]:
    """The event's RRULEs; a malformed one (`INTERVAL=x`, `BYDAY=XX`) is a 422 naming it."""
    try:
        value = event.get("RRULE")
        rules = [] if value is None else value if isinstance(value, list) else [value]
        for rule in rules:
            rule.get("FREQ")  # icalendar raises here for a value it could not parse
    except Exception as exc:
        raise CalendarRejected(
            f"event {str(event.get('UID', '?'))[:100]}: its RRULE is malformed: {_first_line(exc)}"
        )
    return rules


def _rule_number(rule: Any, part: str, event: icalendar.Component) -> int:
    raw = (rule.get(part) or [1])[0]
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise CalendarRejected(
            f"event {str(event.get('UID', '?'))[:100]}: RRULE {part}={str(raw)[:20]!r} "
            "is not a number"
        )


def _check_expansion_cost(cal: icalendar.Calendar, end: datetime, zone: tzinfo) -> None:
    """Refuse recurrences whose expansion would be unbounded work before doing it."""
    steps = 0.0
    for event in cal.walk("VEVENT"):
        for rule in _rrules(event):
            freq = str((rule.get("FREQ") or ["?"])[0]).upper()
            if freq in ("SECONDLY", "MINUTELY"):
                raise CalendarRejected(
                    f"event {event.get('UID', '?')}: FREQ={freq} is too fine for busy time"
                )
            interval = max(_rule_number(rule, "INTERVAL", event), 1)
            try:
                start = _as_utc(event.decoded("DTSTART"), zone)
            except Exception:
                continue  # a series without a usable start is skipped when expanding
            periods = max((end - start).total_seconds(), 0) / (
                _FREQ_SECONDS.get(freq, 86400) * interval
            )
            if "COUNT" in rule:  # a counted series stops early, however old its start
                periods = min(periods, max(_rule_number(rule, "COUNT", event), 0))
            multiplier = 1
            for part in _BY_PARTS:
                if part in rule:
                    multiplier *= max(len(rule[part]), 1)
            steps += (periods + 1) * multiplier
    if steps > MAX_EXPANSION_STEPS:
        raise CalendarTooLarge(
            f"the calendar's recurrences are too dense to expand (about {int(steps):,} "
            f"occurrences from their start to the horizon; at most {MAX_EXPANSION_STEPS:,})"
        )


def _is_free(component: icalendar.Component) -> bool:
    transp = str(component.get("TRANSP", "OPAQUE")).upper()
    status = str(component.get("STATUS", "")).upper()
    # Outlook marks "show as free" in its own property too.
    busy = str(component.get("X-MICROSOFT-CDO-BUSYSTATUS", "BUSY")).upper()
    return transp == "TRANSPARENT" or status == "CANCELLED" or busy == "FREE"


def busy_events(
    cal: icalendar.Calendar,
    *,
    start: datetime,
    end: datetime,
    zone: tzinfo | None = None,
    max_events: int = MAX_EVENTS,
) -> list[BusyEvent]:
    """The calendar's busy occurrences overlapping [start, end), recurrences expanded."""
    zone = _calendar_zone(cal, zone or get_settings().zone)
    _check_expansion_cost(cal, end, zone)
    try:
        occurrences = recurring_ical_events.of(cal, skip_bad_series=True).between(start, end)
    except Exception as exc:
        raise CalendarRejected(f"cannot expand the calendar's recurrences: {_first_line(exc)}")
    found: dict[tuple[str, datetime], BusyEvent] = {}
    for occurrence in occurrences:
        if _is_free(occurrence):
            continue
        try:
            begin = _as_utc(occurrence.decoded("DTSTART"), zone)
            finish = _as_utc(occurrence.decoded("DTEND"), zone) if "DTEND" in occurrence else begin
        except Exception:
            continue  # an occurrence without usable times blocks nothing
        if finish <= begin or finish <= start or begin >= end:
            continue
        uid = str(occurrence.get("UID", "")).strip()[:500] or _anonymous_uid(begin)
        if uid.endswith(OWN_UID_SUFFIX):
            # Our own feed echoed back through the lab's calendar: importing it would
            # turn every booking into busy time that displaces itself.
            continue
        # One occurrence per (UID, start): duplicates would give a feed two equal UIDs.
        found.setdefault((uid, begin), BusyEvent(start=begin, end=finish, uid=uid))
        if len(found) > max_events:
            raise CalendarTooLarge(
                f"the calendar expands to more than {max_events:,} busy events before the "
                "booking horizon"
            )
    return sorted(found.values())


def _anonymous_uid(start: datetime) -> str:
    return "no-uid-" + hashlib.sha1(start.isoformat().encode()).hexdigest()[:12]


def import_window(instrument: Instrument, now: datetime) -> tuple[datetime, datetime]:
    """Busy time matters from a day back to the instrument's booking horizon."""
    return now - timedelta(days=PAST_DAYS), now + timedelta(days=instrument.horizon_days + 1)


def expand_calendar(data: bytes, *, instrument: Instrument, now: datetime) -> list[BusyEvent]:
    """Parse and expand an .ics body for `instrument`: all checks, no writes."""
    start, end = import_window(instrument, now)
    return busy_events(parse_calendar(data), start=start, end=end)
