"""An instrument's time as intervals: opening hours in the local zone, blackouts, bookings.

Everything here is in UTC except opening hours, which labs publish as local wall-clock
times; they are expanded per local date with zoneinfo, so a day that gains or loses an
hour to daylight saving still opens at 09:00 local time.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from booking.intervals import (
    Hours,
    Interval,
    expand_hours,
    merge,
    subtract,
)
from booking.models import ACTIVE_STATUSES, Booking, BookingStatus, status_active, status_among
from core.db import UTCDateTime, among, database_key, plain_rows, utc_from_text
from core.kept import warm_in_background
from core.settings import get_settings
from core.timeutil import to_utc_z
from instruments.models import Blackout, Instrument, OpeningHours

# The longest booking any rule allows (instruments.schemas.BookingRules.max_minutes):
# bounds the index scan for bookings that started before a window and reach into it.
LONGEST_BOOKING = timedelta(days=31)


def zone() -> ZoneInfo:
    """The network's zone (LABSHARE_TIMEZONE): opening hours and the slot grid live in it."""
    return get_settings().zone


@dataclass(frozen=True, slots=True)
class Busy:
    """A busy interval: `booking`, `blackout` or `closed`; never says whose."""

    start: datetime
    end: datetime
    kind: str
    booking_id: int | None = None
    status: str | None = None
    expires_at: datetime | None = None
    # Whose booking it is: only ever compared with the person asking (their own booking
    # reads as theirs on a refusal), never shown.
    user_id: int | None = None

    def public(self) -> dict[str, str]:
        """What a 409 or an availability answer may say: when and what kind, not whose."""
        return {"start": to_utc_z(self.start), "end": to_utc_z(self.end), "kind": self.kind}


@dataclass
class Timeline:
    """One instrument's hours and busy time over a loaded window."""

    instrument: Instrument
    hours: Hours
    busy: list[Busy] = field(default_factory=list)
    tz: ZoneInfo = field(default_factory=zone)
    # Shared by the timelines of one load: instruments with the same weekly hours (most of
    # them) expand them once per window.
    open_cache: dict[tuple[object, ...], list[Interval]] = field(default_factory=dict)
    _hours_key: tuple[object, ...] | None = None
    # The busy time was read by the statement that took the instrument's lock, on a snapshot
    # a moment older than the lock (booking.service.signed_in_at_instrument): a blackout
    # committed in between can be missing, so the insert looks for one again. (A booking
    # committed in between cannot slip through: the exclusion constraint refuses it.)
    read_before_lock: bool = False

    def open(self, start: datetime, end: datetime) -> list[Interval]:
        key = (self.hours_key, start, end)
        found = self.open_cache.get(key)
        if found is None:
            found = self.open_cache[key] = expand_hours(self.hours, start, end, self.tz)
        return found

    @property
    def hours_key(self) -> tuple[object, ...]:
        if self._hours_key is None:
            self._hours_key = tuple(sorted((d, tuple(v)) for d, v in self.hours.items()))
        return self._hours_key

    def overlapping(
        self, start: datetime, end: datetime, *, ignore: int | None = None
    ) -> list[Busy]:
        return [
            b
            for b in self.busy
            if b.start < end and b.end > start and (ignore is None or b.booking_id != ignore)
        ]

    def conflicts(self, start: datetime, end: datetime, *, ignore: int | None = None) -> list[Busy]:
        """Everything that stops [start, end) from being booked, earliest first."""
        closed = [Busy(s, e, "closed") for s, e in subtract([(start, end)], self.open(start, end))]
        return sorted(closed + self.overlapping(start, end, ignore=ignore), key=lambda b: b.start)

    def free(self, start: datetime, end: datetime, *, ignore: int | None = None) -> list[Interval]:
        """Open and not busy, within [start, end)."""
        taken = merge(
            (max(b.start, start), min(b.end, end))
            for b in self.overlapping(start, end, ignore=ignore)
        )
        return subtract(self.open(start, end), taken)

    def add(self, item: Busy) -> None:
        bisect.insort(self.busy, item, key=lambda b: b.start)

    def remove_booking(self, booking_id: int) -> None:
        self.busy = [b for b in self.busy if b.booking_id != booking_id]


# Weekly hours per (database, instrument, instrument.updated_at): publishing hours bumps the
# instrument's updated_at (instruments.service.opening_hours_set), so a changed instrument
# misses the cache in every process. A booking (which reads its instrument in the same
# transaction, under its lock) and free-slot search over hundreds of instruments then read
# only rules and busy time.
_HOURS_CACHE: dict[tuple[str, int, datetime], Hours] = {}
_HOURS_CACHE_MAX = 50_000


class Stamped(Protocol):
    """What the hours cache keys on: an Instrument, or a row with its id and updated_at."""

    @property
    def id(self) -> int | None: ...
    @property
    def updated_at(self) -> datetime: ...


def _remember_hours(bind: str, stamps: dict[int, datetime], loaded: dict[int, Hours]) -> None:
    if len(_HOURS_CACHE) + len(loaded) > _HOURS_CACHE_MAX:
        _HOURS_CACHE.clear()
        _PATTERNS.clear()
    for instrument_id, hours in loaded.items():
        _HOURS_CACHE[(bind, instrument_id, stamps[instrument_id])] = hours


def _hours_rows(session: Session, ids: list[int] | None) -> dict[int, Hours]:
    """Weekly hours of `ids` (of every instrument when None), in one statement."""
    query = sa_select(
        col(OpeningHours.instrument_id),
        col(OpeningHours.weekday),
        col(OpeningHours.opens),
        col(OpeningHours.closes),
    ).order_by(col(OpeningHours.instrument_id), col(OpeningHours.weekday), col(OpeningHours.opens))
    if ids is not None:
        query = query.where(among(session, col(OpeningHours.instrument_id), ids))
    loaded: dict[int, Hours] = {i: {} for i in ids or ()}
    for instrument_id, weekday, opens, closes in plain_rows(session, query):
        loaded.setdefault(instrument_id, {}).setdefault(weekday, []).append((opens, closes))
    return {i: _shared(hours) for i, hours in loaded.items()}


# Equal weekly hours as one object: a network's instruments keep a few patterns (4 among
# the benchmark's 12,600), so the cache holds one dict per pattern, not per instrument.
# Nothing changes a cached Hours in place.
_PATTERNS: dict[tuple[object, ...], Hours] = {}


def _shared(hours: Hours) -> Hours:
    key = tuple(sorted((d, tuple(v)) for d, v in hours.items()))
    return _PATTERNS.setdefault(key, hours)


def warm_hours(session: Session) -> int:
    """Fill this process's hours cache with the weekly hours of every instrument (up to the
    cache's size), in two statements, so that no booking or slot search pays a statement
    for an instrument this process has not met yet. Returns how many it holds.

    The stamps are read before the hours: hours published in between are then kept under
    the old stamp, which the next read misses, never old hours under a new stamp."""
    stamps = dict(
        plain_rows(
            session,
            sa_select(col(Instrument.id), col(Instrument.updated_at))
            .order_by(col(Instrument.id))
            .limit(_HOURS_CACHE_MAX),
        )
    )
    found = _hours_rows(session, None)
    loaded = {i: found.get(i, {}) for i in stamps}
    _remember_hours(database_key(session), stamps, loaded)
    return len(loaded)


def warm_hours_in_background(open_session: Callable[[], Session]) -> threading.Thread:
    """warm_hours in a thread of its own, at start-up."""

    def work() -> None:
        with open_session() as session:
            warm_hours(session)

    return warm_in_background("labshare-hours-warm", "every instrument's opening hours", work)


def hours_by_instrument(session: Session, instruments: Sequence[Stamped]) -> dict[int, Hours]:
    """Each instrument's weekly opening hours, from the cache where its updated_at matches."""
    bind = database_key(session)
    out: dict[int, Hours] = {}
    missing: list[int] = []
    for i in instruments:
        assert i.id is not None
        found = _HOURS_CACHE.get((bind, i.id, i.updated_at))
        if found is None:
            missing.append(i.id)
        else:
            out[i.id] = found
    if not missing:
        return out
    loaded = _hours_rows(session, missing)
    _remember_hours(bind, {i.id: i.updated_at for i in instruments if i.id is not None}, loaded)
    out.update(loaded)
    return out


def _overlaps_active(start: datetime, end: datetime) -> list[Any]:
    """Bookings overlapping [start, end), through the (instrument, start) b-tree index with a
    lower bound from the longest booking a rule allows. On PostgreSQL this beats the
    exclusion constraint's GiST index: its planner, given both, ANDs the b-tree with a
    GiST scan of the range alone over every instrument (14 ms for one instrument's week on
    the 1.3 M-booking network, against 0.1 ms; bench/booking.py)."""
    return [
        col(Booking.start_at) < end,
        col(Booking.start_at) > start - LONGEST_BOOKING,
        col(Booking.end_at) > start,
    ]


def busy_one_statement(instrument_param: str = "i") -> Any:
    """Blackouts and active bookings of one instrument (the parameter `instrument_param`)
    overlapping [:s, :e) (busy_params), in one statement built once (its SQL is compiled
    once too, and prepared by psycopg)."""
    start, end = bindparam("s", type_=UTCDateTime()), bindparam("e", type_=UTCDateTime())
    instrument = bindparam(instrument_param, type_=sa.Integer())
    blackouts = sa_select(
        sa.literal("blackout").label("kind"),
        col(Blackout.start_at),
        col(Blackout.end_at),
        sa.null().label("id"),
        sa.null().label("status"),
        sa.null().label("expires_at"),
        sa.null().label("user_id"),
    ).where(
        col(Blackout.instrument_id) == instrument,
        col(Blackout.start_at) < end,
        col(Blackout.end_at) > start,
    )
    overlaps = [
        col(Booking.start_at) < end,
        col(Booking.start_at) > bindparam("since", type_=UTCDateTime()),
        col(Booking.end_at) > start,
    ]
    bookings = sa_select(
        sa.literal("booking").label("kind"),
        col(Booking.start_at),
        col(Booking.end_at),
        col(Booking.id),
        col(Booking.status),
        col(Booking.expires_at),
        col(Booking.user_id),
    ).where(
        col(Booking.instrument_id) == instrument,
        status_active(),
        *overlaps,
    )
    both = sa.union_all(blackouts, bookings).subquery()
    # Through the union SQLite loses the columns' types: say them again.
    return sa_select(
        both.c.kind,
        sa.type_coerce(both.c.start_at, UTCDateTime()),
        sa.type_coerce(both.c.end_at, UTCDateTime()),
        both.c.id,
        both.c.status,
        sa.type_coerce(both.c.expires_at, UTCDateTime()),
        both.c.user_id,
    )


_BUSY_ONE = busy_one_statement()


def busy_params(start: datetime, end: datetime) -> dict[str, datetime]:
    """busy_one_statement's parameters for [start, end), but the instrument's."""
    return {"s": start, "e": end, "since": start - LONGEST_BOOKING}


def busy_of(rows: Iterable[Sequence[Any]]) -> list[Busy]:
    """busy_one_statement's rows as busy time, earliest first."""
    busy = [
        Busy(s, e, kind, booking_id, BookingStatus(status).value if status else None, expires, uid)
        for kind, s, e, booking_id, status, expires, uid in rows
    ]
    busy.sort(key=lambda b: b.start)
    return busy


def busy_of_json(items: Iterable[Sequence[Any]]) -> list[Busy]:
    """busy_of for busy_one_statement's rows as json_rows carried them."""
    return busy_of(
        (kind, utc_from_text(s), utc_from_text(e), booking_id, status, utc_from_text(x), uid)
        for kind, s, e, booking_id, status, x, uid in items
    )


def load_busy_one(
    session: Session, instrument_id: int, start: datetime, end: datetime
) -> list[Busy]:
    """load_busy for a single instrument: one statement, blackouts and bookings together."""
    params = {"i": instrument_id, **busy_params(start, end)}
    return busy_of(plain_rows(session, _BUSY_ONE, params))


def load_busy(
    session: Session, ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, list[Busy]]:
    """Blackouts (every kind, imported too) and active bookings overlapping [start, end)."""
    if len(ids) == 1:
        return {ids[0]: load_busy_one(session, ids[0], start, end)}
    busy: dict[int, list[Busy]] = defaultdict(list)
    blackouts = plain_rows(
        session,
        sa_select(col(Blackout.instrument_id), col(Blackout.start_at), col(Blackout.end_at)).where(
            among(session, col(Blackout.instrument_id), list(ids)),
            col(Blackout.start_at) < end,
            col(Blackout.end_at) > start,
        ),
    )
    for instrument_id, s, e in blackouts:
        busy[instrument_id].append(Busy(s, e, "blackout"))
    bookings = plain_rows(
        session,
        sa_select(
            col(Booking.instrument_id),
            col(Booking.id),
            col(Booking.start_at),
            col(Booking.end_at),
            col(Booking.status),
            col(Booking.expires_at),
            col(Booking.user_id),
        ).where(
            among(session, col(Booking.instrument_id), list(ids)),
            status_among(ACTIVE_STATUSES),
            *_overlaps_active(start, end),
        ),
    )
    for instrument_id, booking_id, s, e, status, expires_at, owner in bookings:
        busy[instrument_id].append(
            Busy(s, e, "booking", booking_id, BookingStatus(status).value, expires_at, owner)
        )
    for items in busy.values():
        items.sort(key=lambda b: b.start)
    return busy


def load_timelines(
    session: Session,
    instruments: Sequence[Instrument],
    start: datetime,
    end: datetime,
    *,
    with_busy: bool = True,
) -> dict[int, Timeline]:
    """Timelines of many instruments over [start, end) in three set-based queries (one, for
    opening hours alone, when the caller already knows they are not busy)."""
    ids = [i.id for i in instruments if i.id is not None]
    if not ids:
        return {}
    hours = hours_by_instrument(session, instruments)
    busy = load_busy(session, ids, start, end) if with_busy else {}
    tz = zone()
    cache: dict[tuple[object, ...], list[Interval]] = {}
    return {
        i.id: Timeline(
            instrument=i,
            hours=hours.get(i.id, {}),
            busy=busy.get(i.id, []),
            tz=tz,
            open_cache=cache,
        )
        for i in instruments
        if i.id is not None
    }


def load_timeline(
    session: Session, instrument: Instrument, start: datetime, end: datetime
) -> Timeline:
    """One instrument's timeline over [start, end)."""
    assert instrument.id is not None
    busy = load_busy_one(session, instrument.id, start, end)
    return timeline_of(session, instrument, busy, read_before_lock=False)


def timeline_of(
    session: Session, instrument: Instrument, busy: list[Busy], *, read_before_lock: bool
) -> Timeline:
    """One instrument's timeline from busy time the caller read (busy_one_statement;
    `read_before_lock`: see Timeline)."""
    assert instrument.id is not None
    hours = hours_by_instrument(session, [instrument])
    return Timeline(
        instrument=instrument,
        hours=hours.get(instrument.id, {}),
        busy=busy,
        read_before_lock=read_before_lock,
    )
