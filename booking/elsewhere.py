"""The same time on equivalent instruments: the second half of a 409's alternatives.

A category's instruments and their booking rules change rarely and are read on every
refusal, so each process keeps them per category, stamped with the newest `updated_at` of
the instrument table (every change to an instrument sets it: instruments.service). A
refusal then asks the database, in one statement, only what changes by the minute: which
of a few nearest candidates are free at that time and allowed to this person, and the
stamp (one row of an index), which says whether the cache they came from still holds.
Before, one statement ranked the whole category on every refusal: 60% of
PostgreSQL's time under the booking benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, exists, func, literal_column, or_
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col

from booking.errors import RuleViolation
from booking.intervals import expand_hours, subtract
from booking.models import Booking, status_active
from booking.rules import check_shape
from booking.timeline import LONGEST_BOOKING, hours_by_instrument, zone
from core.db import UTCDateTime, database_key, is_postgres, plain_rows
from core.timeutil import to_utc_z
from instruments.models import (
    Blackout,
    Instrument,
    InstrumentStatus,
    Lab,
    Qualification,
)

EQUIVALENT_MAX = 5
# How many of the nearest candidates are probed for busy time, per answer wanted: most of
# a category is free at any one time and open at most times.
PROBED_PER_ANSWER = 5


@dataclass(frozen=True, slots=True)
class Candidate:
    """An instrument of the category, with what ranks it and what its rules allow."""

    id: int
    lab_id: int
    institution_id: int
    status: InstrumentStatus
    slot_step_minutes: int
    min_minutes: int
    max_minutes: int
    lead_minutes: int
    horizon_days: int
    qualification_required: bool
    updated_at: datetime


def slot(instrument_id: int, start: datetime, end: datetime) -> dict[str, object]:
    """An alternative as a 409 offers it."""
    return {"instrument_id": instrument_id, "start": to_utc_z(start), "end": to_utc_z(end)}


_STAMP = sa_select(func.max(col(Instrument.updated_at)))
_CATEGORY = (
    sa_select(
        col(Instrument.id),
        col(Instrument.lab_id),
        col(Lab.institution_id),
        col(Instrument.status),
        col(Instrument.slot_step_minutes),
        col(Instrument.min_minutes),
        col(Instrument.max_minutes),
        col(Instrument.lead_minutes),
        col(Instrument.horizon_days),
        col(Instrument.qualification_required),
        col(Instrument.updated_at),
    )
    .join(Lab, col(Lab.id) == Instrument.lab_id)
    .where(col(Instrument.category_id) == bindparam("category_id"))
    .order_by(col(Instrument.id))
)


@dataclass(frozen=True)
class CategoryInstruments:
    """A category's active instruments, by id, and grouped by lab and by institution."""

    active: list[Candidate]
    by_lab: dict[int, list[Candidate]]
    by_institution: dict[int, list[Candidate]]
    institution_of: dict[int, int]  # every instrument's, active or not

    @classmethod
    def of(cls, candidates: list[Candidate]) -> CategoryInstruments:
        active = [c for c in candidates if c.status == InstrumentStatus.active]
        by_lab: dict[int, list[Candidate]] = {}
        by_institution: dict[int, list[Candidate]] = {}
        for c in active:
            by_lab.setdefault(c.lab_id, []).append(c)
            by_institution.setdefault(c.institution_id, []).append(c)
        return cls(active, by_lab, by_institution, {c.id: c.institution_id for c in candidates})

    def nearest(self, instrument: Instrument, minutes: int) -> Iterator[Candidate]:
        """The others that allow this length, in the order people want them: same lab,
        then same institution, then the rest (each by id). Lazily: a refusal needs only
        the first few of a category of hundreds."""
        lab_id = instrument.lab_id
        institution_id = self.institution_of.get(instrument.id or 0)
        groups = (
            (c for c in self.by_lab.get(lab_id, ())),
            (c for c in self.by_institution.get(institution_id or 0, ()) if c.lab_id != lab_id),
            (c for c in self.active if c.lab_id != lab_id and c.institution_id != institution_id),
        )
        for group in groups:
            for c in group:
                if c.id != instrument.id and c.min_minutes <= minutes <= c.max_minutes:
                    yield c


# (database, category) -> (the stamp it was read under, its instruments)
_CACHE: dict[tuple[str, int], tuple[datetime | None, CategoryInstruments]] = {}


def _read_category(
    session: Session, key: tuple[str, int]
) -> tuple[datetime | None, CategoryInstruments]:
    """The stamp, then the category's instruments (read in this order: an instrument that
    changes in between is kept under the older stamp, which the next refusal sees moved)."""
    stamp = plain_rows(session, _STAMP)[0][0]
    rows = plain_rows(session, _CATEGORY, {"category_id": key[1]})
    found = _CACHE[key] = (stamp, CategoryInstruments.of([Candidate(*row) for row in rows]))
    return found


def _free_statement(postgres: bool) -> Any:
    """Which of the instruments `:ids` are free over [:s, :e) (no active booking, no
    blackout) and, those of `:qualify`, allowed to the person at `:now`. Built once per
    database kind; the rules came from the cache, so the instrument table is not read."""
    start, end = bindparam("s", type_=UTCDateTime()), bindparam("e", type_=UTCDateTime())
    overlap: list[Any]
    if postgres:
        # The ids as a table of their own (one array parameter: a fixed statement that
        # PostgreSQL plans once, where `id = ANY(:ids)` was planned anew each time).
        ids = (
            func.unnest(bindparam("ids", type_=ARRAY(sa.Integer())))
            .table_valued("id")
            .render_derived(name="candidate")
        )
        ident: Any = ids.c.id
        source: Any = ids
        # The exclusion constraint's GiST index answers "overlaps" exactly, per instrument.
        # The bounds are a literal, not a parameter: the plan a prepared statement settles
        # on must see the index's own expression, tstzrange(start_at, end_at, '[)'), or it
        # filters every active booking of each candidate (4 ms a 409; bench/booking.py).
        bounds: Any = literal_column("'[)'")
        overlap = [
            func.tstzrange(Booking.start_at, Booking.end_at, bounds).op("&&")(
                func.tstzrange(start, end, bounds)
            )
        ]
        unqualified = ident != sa.all_(bindparam("qualify", type_=ARRAY(sa.Integer())))
        wanted: list[Any] = []
    else:
        ident = col(Instrument.id)
        source = Instrument
        overlap = [
            col(Booking.start_at) < end,
            col(Booking.end_at) > start,
            col(Booking.start_at) > bindparam("since", type_=UTCDateTime()),
        ]
        unqualified = ident.not_in(bindparam("qualify", expanding=True))
        wanted = [ident.in_(bindparam("ids", expanding=True))]
    booked = exists().where(
        col(Booking.instrument_id) == ident,
        status_active(),
        *overlap,
    )
    blacked_out = exists().where(
        col(Blackout.instrument_id) == ident,
        col(Blackout.start_at) < end,
        col(Blackout.end_at) > start,
    )
    qualified = exists().where(
        col(Qualification.instrument_id) == ident,
        col(Qualification.user_id) == bindparam("user_id"),
        col(Qualification.revoked_at).is_(None),
        or_(
            col(Qualification.expires_at).is_(None),
            col(Qualification.expires_at) > bindparam("now", type_=UTCDateTime()),
        ),
    )
    free = (
        sa_select(ident.label("id"), sa.null().label("stamp"))
        .select_from(source)
        .where(*wanted, or_(unqualified, qualified), ~booked, ~blacked_out)
    )
    # The instruments' stamp on a row of its own, in the same round trip: the candidates
    # came from the cache, and the answer counts only if nothing changed since it was read.
    stamp = sa_select(sa.null().label("id"), func.max(col(Instrument.updated_at)).label("stamp"))
    both = sa.union_all(stamp, free).subquery()
    return sa_select(both.c.id, sa.type_coerce(both.c.stamp, UTCDateTime()))


_FREE = {True: _free_statement(True), False: _free_statement(False)}


def _nearest_allowed(
    category: CategoryInstruments,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    tz: Any,
    limit: int,
) -> list[Candidate]:
    """The nearest candidates whose rules allow [start, end), enough to probe for `limit`."""
    minutes = int((end - start).total_seconds() // 60)
    nearest = []
    for other in category.nearest(instrument, minutes):
        try:
            check_shape(other, start, end, now=now, tz=tz)
        except RuleViolation:
            continue
        nearest.append(other)
        if len(nearest) >= limit * PROBED_PER_ANSWER:
            break
    return nearest


def _probe(
    session: Session,
    nearest: list[Candidate],
    start: datetime,
    end: datetime,
    *,
    user_id: int,
    now: datetime,
) -> tuple[set[int], datetime | None]:
    """Which candidates are free and allowed to the person, and the instruments' stamp."""
    postgres = is_postgres(session)
    params: dict[str, Any] = {
        "ids": [c.id for c in nearest],
        "qualify": [c.id for c in nearest if c.qualification_required],
        "s": start,
        "e": end,
        "now": now,
        "user_id": user_id,
    }
    if not postgres:
        params["since"] = start - LONGEST_BOOKING
    free: set[int] = set()
    stamp = None
    for instrument_id, row_stamp in plain_rows(session, _FREE[postgres], params):
        if instrument_id is None:
            stamp = row_stamp
        else:
            free.add(instrument_id)
    return free, stamp


def same_time_elsewhere(
    session: Session,
    instrument: Instrument,
    start: datetime,
    end: datetime,
    *,
    user_id: int,
    now: datetime,
    limit: int = EQUIVALENT_MAX,
) -> list[dict[str, object]]:
    """The same time on active instruments of the same category: same lab first, then same
    institution, then the rest; only those free then, open then, and allowed to the person
    and to the length."""
    assert instrument.id is not None
    tz = zone()
    key = (database_key(session), instrument.category_id)
    cached = _CACHE.get(key)
    read_now = cached is None
    stamp, category = cached or _read_category(session, key)
    while True:
        nearest = _nearest_allowed(category, instrument, start, end, now=now, tz=tz, limit=limit)
        if nearest:
            free, current = _probe(session, nearest, start, end, user_id=user_id, now=now)
        else:  # nothing to probe: the stamp alone says whether the cache still holds
            free, current = set(), stamp if read_now else plain_rows(session, _STAMP)[0][0]
        if read_now or current == stamp:
            break
        # An instrument changed since this process read the category: read it again.
        stamp, category = _read_category(session, key)
        read_now = True
    fits = [c for c in nearest if c.id in free]
    # Busy ones are gone already: only opening hours remain to check.
    hours = hours_by_instrument(session, fits)
    out: list[dict[str, object]] = []
    for other in fits:
        if not subtract([(start, end)], expand_hours(hours.get(other.id, {}), start, end, tz)):
            out.append(slot(other.id, start, end))
            if len(out) >= limit:
                break
    return out
