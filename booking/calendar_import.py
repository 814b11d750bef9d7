"""A lab's own calendar as busy time: parse, expand recurrences, import as imported blackouts.

Everything that can fail (size, syntax, recurrence expansion) happens before anything is
written; the write then replaces the source's busy time in one transaction, by difference,
so a re-import of the same calendar changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
from sqlalchemy import delete
from sqlmodel import Session, col, select

from booking.ical import UID_DOMAIN
from booking.labs import displace_overlapping
from booking.models import ACTIVE_STATUSES, Booking, CalendarSource
from core.errors import AppError, Invalid, NotFound
from core.models import User
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.models import Blackout, BlackoutKind, Instrument
from instruments.service import instrument_get, require_manager

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_EVENTS = 5000
# Rough count of recurrence steps we are willing to walk (dateutil starts at DTSTART):
# a few hundred thousand is about a second.
MAX_EXPANSION_STEPS = 300_000
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
_BY_PARTS = ("BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO")


class CalendarRejected(Invalid):
    """The body is not a calendar we can import; the message says why."""


class CalendarTooLarge(AppError):
    status_code = 413


class CalendarSourceNotFound(NotFound):
    def __init__(self, source_id: int) -> None:
        super().__init__(f"no calendar {source_id} on this instrument")


@dataclass(frozen=True, order=True)
class BusyEvent:
    """One busy occurrence from an imported calendar, in UTC."""

    start: datetime
    end: datetime
    uid: str


@dataclass(frozen=True)
class ImportResult:
    source: CalendarSource
    added: int
    removed: int
    kept: int
    displaced: int


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
    value = event.get("RRULE")
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


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
            try:
                start = _as_utc(event.decoded("DTSTART"), zone)
                interval = max(int((rule.get("INTERVAL") or [1])[0]), 1)
            except Exception:
                continue  # a broken series is skipped when expanding
            periods = max((end - start).total_seconds(), 0) / (
                _FREQ_SECONDS.get(freq, 86400) * interval
            )
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


# ------------------------------------------------------------------------------------- write


def lock_source(session: Session, source_id: int) -> CalendarSource | None:
    # Two syncs of one source take turns (SQLite: the write lock already serialises).
    return session.exec(
        select(CalendarSource).where(CalendarSource.id == source_id).with_for_update()
    ).first()


def apply_busy_events(
    session: Session,
    *,
    source: CalendarSource,
    instrument: Instrument,
    events: list[BusyEvent],
    now: datetime,
) -> ImportResult:
    """Make the source's imported busy time exactly `events`, changing only what differs.

    New busy time displaces active bookings it overlaps, as a blackout does."""
    assert source.id is not None and instrument.id is not None
    existing = session.exec(
        select(Blackout).where(
            Blackout.source_id == source.id, Blackout.kind == BlackoutKind.imported
        )
    ).all()
    have = {(b.source_uid or "", b.start_at, b.end_at): b for b in existing}
    want = {(e.uid, e.start, e.end) for e in events}
    gone = [b.id for key, b in have.items() if key not in want]
    for i in range(0, len(gone), 500):
        session.exec(delete(Blackout).where(col(Blackout.id).in_(gone[i : i + 500])))  # type: ignore[call-overload]
    added = sorted(key for key in want if key not in have)
    session.add_all(
        Blackout(
            instrument_id=instrument.id,
            start_at=start,
            end_at=end,
            kind=BlackoutKind.imported,
            reason=f"imported calendar {source.id}",
            source_id=source.id,
            source_uid=uid,
        )
        for uid, start, end in added
    )
    source.events_imported = len(want)
    source.last_fetched_at = now
    source.last_error = None
    session.add(source)
    session.flush()
    displaced = _displace(session, instrument=instrument, added=added, now=now)
    return ImportResult(
        source=source,
        added=len(added),
        removed=len(gone),
        kept=len(want) - len(added),
        displaced=displaced,
    )


def _displace(
    session: Session,
    *,
    instrument: Instrument,
    added: list[tuple[str, datetime, datetime]],
    now: datetime,
) -> int:
    if not added:
        return 0
    # One query for the bookings near the new busy time; displace only where one is hit.
    lo, hi = min(a[1] for a in added), max(a[2] for a in added)
    bookings = session.exec(
        select(Booking.start_at, Booking.end_at).where(
            Booking.instrument_id == instrument.id,
            col(Booking.status).in_(ACTIVE_STATUSES),
            col(Booking.start_at) < hi,
            col(Booking.end_at) > lo,
            col(Booking.end_at) > now,
        )
    ).all()
    count = 0
    for _uid, start, end in added:
        if any(b_start < end and b_end > start for b_start, b_end in bookings):
            count += len(
                displace_overlapping(
                    session,
                    instrument=instrument,
                    start=start,
                    end=end,
                    reason="the lab's own calendar shows it busy",
                    now=now,
                )
            )
    return count


# ----------------------------------------------------------------------------- the sources


def _source_of(session: Session, instrument_id: int, source_id: int) -> CalendarSource:
    source = session.get(CalendarSource, source_id)
    if source is None or source.instrument_id != instrument_id:
        raise CalendarSourceNotFound(source_id)
    return source


def calendar_import_body(
    session: Session,
    *,
    user: User,
    instrument_id: int,
    data: bytes,
    source_id: int | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Import an uploaded .ics as busy time: a new source, or replace an uploaded one."""
    instrument = instrument_get(session, instrument_id)
    require_manager(user, instrument)
    return calendar_import_file(
        session, instrument=instrument, data=data, source_id=source_id, user_id=user.id, now=now
    )


def calendar_import_file(
    session: Session,
    *,
    instrument: Instrument,
    data: bytes,
    source_id: int | None = None,
    user_id: int | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Import .ics bytes for `instrument` (no permission check: the caller did it)."""
    assert instrument.id is not None
    now = now or utcnow()
    events = expand_calendar(data, instrument=instrument, now=now)
    if source_id is None:
        source = CalendarSource(instrument_id=instrument.id, url=None, created_by_id=user_id)
        session.add(source)
        session.flush()
    else:
        locked = lock_source(session, source_id)
        if locked is None or locked.instrument_id != instrument.id:
            raise CalendarSourceNotFound(source_id)
        source = locked
        if source.url:
            raise CalendarRejected("this calendar is fetched from its URL; upload a new one")
    return apply_busy_events(session, source=source, instrument=instrument, events=events, now=now)


def calendar_source_add_url(
    session: Session, *, user: User, instrument_id: int, url: str, refresh_minutes: int
) -> CalendarSource:
    """Subscribe the instrument to a calendar URL; the sync fetches it (first at once)."""
    from booking.calendar_fetch import normalise_url

    instrument = instrument_get(session, instrument_id)
    require_manager(user, instrument)
    source = CalendarSource(
        instrument_id=instrument_id,
        url=normalise_url(url),
        refresh_minutes=refresh_minutes,
        created_by_id=user.id,
    )
    session.add(source)
    session.flush()
    return source


def calendar_source_list(
    session: Session, *, user: User, instrument_id: int
) -> list[CalendarSource]:
    """The instrument's imported calendars (their URLs may be secret: managers only)."""
    require_manager(user, instrument_get(session, instrument_id))
    return list(
        session.exec(
            select(CalendarSource)
            .where(CalendarSource.instrument_id == instrument_id)
            .order_by(col(CalendarSource.id))
        ).all()
    )


def calendar_source_delete(
    session: Session, *, user: User, instrument_id: int, source_id: int
) -> int:
    """Remove a calendar and all its busy time; returns how many busy intervals went."""
    require_manager(user, instrument_get(session, instrument_id))
    source = _source_of(session, instrument_id, source_id)
    result = session.exec(  # type: ignore[call-overload]
        delete(Blackout).where(
            col(Blackout.source_id) == source_id, col(Blackout.kind) == BlackoutKind.imported
        )
    )
    session.delete(source)
    session.flush()
    return int(result.rowcount or 0)
