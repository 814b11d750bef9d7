"""Demo history: ~75 days of bookings and usage (and two weeks ahead) on the seeded network.

It lives in labshare, not in instruments' seed: it writes bookings (booking) and usage
sessions (telemetry), and the demo follows it with an invoice run (billing), and only
labshare may import all of those (core <- instruments <- booking <- telemetry <- billing).

Each chosen instrument's calendar is generated day by day, window by window, on its slot
grid inside opening hours, so no two bookings of one instrument ever overlap (whatever
their status; the PostgreSQL exclusion constraint would refuse active ones). Rows go in
with the catalog seed's bulk helpers (COPY on PostgreSQL). The same seed and `now` give
the same history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from booking.models import Booking, BookingStatus
from booking.placement import PENDING_HOLD
from core.db import is_postgres
from core.models import Role, User
from core.progress import NULL_REPORTER, Reporter
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.bulk import insert_plain, insert_rows
from instruments.models import (
    Institution,
    Instrument,
    InstrumentStatus,
    Lab,
    OpeningHours,
    Qualification,
)
from instruments.seed import DEMO_DOMAIN, DEMO_LAB
from telemetry.models import Badge, UsageKind, UsageSession

PAST_DAYS = 75
FUTURE_DAYS = 14
SHARE = 0.40  # of active instruments that see bookings
CHUNK = 5000
DEMO_MAX = 80  # bookings per demo login: a full "my bookings" page, not a thousand
DEMO_PEOPLE = (f"researcher@{DEMO_DOMAIN}", f"engineer@{DEMO_DOMAIN}")
PURPOSES = (
    "Sample characterisation", "Thesis measurements", "Method development",
    "Quality control batch", "Pilot study", "Calibration run", "Contract testing",
    "Repeat of last week's run", "Training session", "Collaboration samples",
)  # fmt: skip


@dataclass(frozen=True)
class HistorySummary:
    instruments: int
    bookings: int
    usage_sessions: int
    walk_ups: int
    by_status: dict[str, int]


@dataclass
class _Inst:
    id: int
    lab_id: int
    institution_id: int
    code: str
    step: int
    shortest: int
    longest: int
    approval: bool
    qualification: bool
    hours: list[tuple[int, int, int]] = field(default_factory=list)  # weekday, from, to (min)


@dataclass
class _People:
    """Who may book what: researchers by institution, firms apart, holders of qualifications."""

    badge: dict[int, str | None]
    by_institution: dict[int, list[int]]
    academic: list[int]
    firms: list[int]
    holders: dict[int, list[int]]
    managers: dict[int, int]
    demo: list[int]


def seed_history(
    session: Session,
    *,
    seed: int,
    now: datetime | None = None,
    share: float = SHARE,
    reporter: Reporter = NULL_REPORTER,
) -> HistorySummary:
    """Bookings from 75 days ago to 14 days ahead, with usage, on a share of the instruments."""
    now = (now or utcnow()).astimezone(UTC).replace(microsecond=0)
    rng = random.Random(seed)
    tz = get_settings().zone
    instruments = _instruments(session)
    people = _people(session)
    chosen = _choose(rng, instruments, people, share)
    builder = _Builder(rng, now, tz, people)
    reporter.start("history", len(chosen))
    first_day = (now.astimezone(tz) - timedelta(days=PAST_DAYS)).date()
    last_day = (now.astimezone(tz) + timedelta(days=FUTURE_DAYS)).date()
    for inst in chosen:
        builder.instrument(inst, first_day, last_day)
        reporter.advance()
    ids = _insert_bookings(session, builder.bookings)
    sessions = [
        {**row, "booking_id": ids[index] if index is not None else None}
        for row, index in builder.usage
    ]
    for offset in range(0, len(sessions), CHUNK):
        insert_plain(session, UsageSession, sessions[offset : offset + CHUNK])
    session.flush()
    session.execute(text("ANALYZE"))
    by_status: dict[str, int] = {}
    for row in builder.bookings:
        by_status[row["status"].value] = by_status.get(row["status"].value, 0) + 1
    return HistorySummary(
        instruments=len(chosen),
        bookings=len(builder.bookings),
        usage_sessions=len(sessions),
        walk_ups=sum(1 for _, index in builder.usage if index is None),
        by_status=by_status,
    )


def _insert_bookings(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert bookings in bulk; their new ids, in order."""
    if is_postgres(session):
        ids: list[int] = []
        for offset in range(0, len(rows), CHUNK):
            ids.extend(insert_rows(session, Booking, rows[offset : offset + CHUNK]))
        return ids
    # SQLite returns ids in parameter order only a row per statement: number them ourselves
    # (the seed holds the write lock, so nobody else takes these ids meanwhile).
    first = session.exec(select(func.coalesce(func.max(Booking.id), 0))).one() + 1
    ids = list(range(first, first + len(rows)))
    numbered = [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
    for offset in range(0, len(numbered), CHUNK):
        insert_plain(session, Booking, numbered[offset : offset + CHUNK])
    return ids


def _instruments(session: Session) -> list[_Inst]:
    rows = session.exec(
        select(
            Instrument.id,
            Instrument.lab_id,
            Lab.institution_id,
            Instrument.code,
            Instrument.slot_step_minutes,
            Instrument.min_minutes,
            Instrument.max_minutes,
            Instrument.approval_required,
            Instrument.qualification_required,
        )
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(Instrument.status == InstrumentStatus.active)
        .order_by(col(Instrument.id))
    ).all()
    by_id = {r[0]: _Inst(*r) for r in rows}  # type: ignore[arg-type]
    hours = session.exec(
        select(
            OpeningHours.instrument_id,
            OpeningHours.weekday,
            OpeningHours.opens,
            OpeningHours.closes,
        ).order_by(col(OpeningHours.instrument_id), col(OpeningHours.weekday))
    ).all()
    for iid, weekday, opens, closes in hours:
        if iid in by_id:
            minutes = (closes.hour * 60 + closes.minute) or 24 * 60  # 00:00 closes at midnight
            by_id[iid].hours.append((weekday, opens.hour * 60 + opens.minute, minutes))
    for inst in by_id.values():
        inst.hours.sort()
    return [i for i in by_id.values() if i.hours]


def _people(session: Session) -> _People:
    firms = set(session.exec(select(Institution.id).where(col(Institution.is_small_company))))
    users = session.exec(
        select(User.id, User.email, User.role, User.institution_id, User.lab_id)
        .where(col(User.is_active))
        .order_by(col(User.id))
    ).all()
    people = _People({}, {}, [], [], {}, {}, [])
    people.badge.update(session.exec(select(Badge.user_id, Badge.code)).all())
    for uid, email, role, inst, lab in users:
        assert uid is not None
        if role == Role.lab_manager and lab is not None:
            people.managers.setdefault(lab, uid)
        if role != Role.researcher or inst is None:
            continue
        if email in DEMO_PEOPLE:  # booked apart, so theirs stay a page, not a thousand
            people.demo.append(uid)
            continue
        people.by_institution.setdefault(inst, []).append(uid)
        (people.firms if inst in firms else people.academic).append(uid)
    for uid, iid in session.exec(
        select(Qualification.user_id, Qualification.instrument_id).order_by(col(Qualification.id))
    ):
        people.holders.setdefault(iid, []).append(uid)
    return people


def _choose(
    rng: random.Random, instruments: list[_Inst], people: _People, share: float
) -> list[_Inst]:
    """A share of the active instruments; one needing a qualification only if someone holds it."""
    eligible = [i for i in instruments if not i.qualification or people.holders.get(i.id)]
    target = min(len(eligible), round(len(instruments) * share))
    demo_lab = [i for i in eligible if i.code.startswith(f"{DEMO_LAB}-")]
    rest = [i for i in eligible if not i.code.startswith(f"{DEMO_LAB}-")]
    picked = demo_lab + rng.sample(rest, k=max(0, min(len(rest), target - len(demo_lab))))
    return sorted(picked, key=lambda i: i.id)


class _Builder:
    """Generates rows in memory: bookings, and usage sessions pointing at a booking's index."""

    def __init__(self, rng: random.Random, now: datetime, tz: ZoneInfo, people: _People):
        self.rng, self.now, self.tz, self.people = rng, now, tz, people
        self.bookings: list[dict[str, Any]] = []
        self.usage: list[tuple[dict[str, Any], int | None]] = []
        # The demo logins' own bookings, so theirs never overlap each other.
        self.demo_busy: dict[int, list[tuple[datetime, datetime]]] = {u: [] for u in people.demo}

    def _regulars(self, inst: _Inst) -> list[int]:
        rng, p = self.rng, self.people
        if inst.qualification:
            others = [u for u in p.holders[inst.id] if u not in p.demo]
            return others or list(p.holders[inst.id])  # only the demo logins hold it
        local = p.by_institution.get(inst.institution_id, [])
        regulars = rng.sample(local, k=min(len(local), rng.randint(0, 3)))
        regulars += rng.sample(p.academic, k=min(len(p.academic), rng.randint(2, 6)))
        if rng.random() < 0.5:  # firms use some instruments, not all
            regulars += rng.sample(p.firms, k=min(len(p.firms), rng.randint(1, 3)))
        return regulars or list(p.academic[:1])

    def instrument(self, inst: _Inst, first: date, last: date) -> None:
        rng = self.rng
        regulars = self._regulars(inst)
        demo = [
            u
            for u in self.people.demo
            if not inst.qualification or u in self.people.holders.get(inst.id, ())
        ]
        # The demo logins use their lab's testing centre often, the rest of the city rarely.
        p_demo = 0.15 if inst.code.startswith(f"{DEMO_LAB}-") else 0.0004
        # Most shared instruments are used a day or two a week; a few are busy.
        busy_day = rng.betavariate(1.3, 5.0)
        fill = rng.uniform(0.3, 0.8)  # how tightly one use follows another
        typical = max(inst.shortest, min(inst.longest, rng.choice((60, 90, 120, 180, 240))))
        slots: list[tuple[datetime, datetime, int | None]] = []  # start, end, user (None: walk-up)
        by_weekday: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        for weekday, opens, closes in inst.hours:
            by_weekday[weekday].append((opens, closes))
        day = first
        while day <= last:
            windows = by_weekday[day.weekday()]
            if windows and rng.random() < busy_day:
                midnight = datetime(day.year, day.month, day.day)
                opens, closes = rng.choice(windows)
                uses = rng.choice((1, 1, 1, 2, 2, 3))
                self._window(inst, midnight, opens, closes, fill, typical, uses, slots, regulars)
            day += timedelta(days=1)
        for n, (start, end, user) in enumerate(slots):
            following = slots[n + 1][0] if n + 1 < len(slots) else end + timedelta(hours=2)
            if user is None:
                self._walk_up(inst, start, end, regulars)
                continue
            own = user in self.demo_busy  # a regular only where nobody else may book
            if own or (demo and rng.random() < p_demo):
                who = user if own else rng.choice(demo)
                mine = self.demo_busy[who]
                if len(mine) < DEMO_MAX and all(end <= a or b <= start for a, b in mine):
                    mine.append((start, end))
                    user = who
                elif own:
                    continue
            self._booking(inst, start, end, user, following)

    def _window(
        self,
        inst: _Inst,
        midnight: datetime,
        opens: int,
        closes: int,
        fill: float,
        typical: int,
        uses: int,
        slots: list[tuple[datetime, datetime, int | None]],
        regulars: list[int],
    ) -> None:
        rng, step = self.rng, inst.step
        cursor = opens + (-opens % step)
        for _ in range(uses):
            if rng.random() > fill:  # an idle stretch first
                cursor += step * rng.randint(1, max(1, 120 // step))
            length = max(inst.shortest, round(typical * rng.uniform(0.5, 1.5) / step) * step)
            length = min(length, inst.longest, closes - cursor - (closes - cursor) % step)
            if length < inst.shortest or length <= 0:
                return
            start = self._utc(midnight, cursor)
            end = self._utc(midnight, cursor + length)
            if rng.random() < 0.08 and end <= self.now:  # someone just walked up
                slots.append((start, end, None))
            else:
                slots.append((start, end, rng.choice(regulars)))
            cursor += length

    def _utc(self, midnight: datetime, minutes: int) -> datetime:
        local = (midnight + timedelta(minutes=minutes)).replace(tzinfo=self.tz)
        return local.astimezone(UTC)

    def _booking(
        self, inst: _Inst, start: datetime, end: datetime, user: int, following: datetime
    ) -> None:
        rng, now = self.rng, self.now
        created = start - timedelta(minutes=rng.randint(120, 14 * 24 * 60))
        row: dict[str, Any] = {
            "instrument_id": inst.id,
            "user_id": user,
            "start_at": start,
            "end_at": end,
            "status": BookingStatus.confirmed,
            "purpose": rng.choice(PURPOSES),
            "series_id": None,
            "version": 1,
            "expires_at": None,
            "decided_by_id": self.people.managers.get(inst.lab_id) if inst.approval else None,
            "created_at": min(created, now - timedelta(minutes=rng.randint(5, 600))),
            "cancelled_at": None,
            "cancelled_by_id": None,
        }
        roll = rng.random()
        if roll < 0.08 and (start > now or end <= now):
            cancelled = start - timedelta(minutes=rng.randint(30, 96 * 60))
            row["status"] = BookingStatus.cancelled
            row["cancelled_at"] = max(row["created_at"], min(cancelled, now))
            manager = self.people.managers.get(inst.lab_id)
            row["cancelled_by_id"] = user if rng.random() < 0.9 or manager is None else manager
            row["version"] = 2
        elif start > now and inst.approval and roll < 0.5:
            row["status"] = BookingStatus.pending
            row["decided_by_id"] = None
            row["created_at"] = now - timedelta(minutes=rng.randint(5, 24 * 60))
            row["expires_at"] = min(row["created_at"] + PENDING_HOLD, start)
        elif end <= now:
            row["status"] = BookingStatus.no_show if roll < 0.14 else BookingStatus.completed
            row["version"] = 2
        row["updated_at"] = row["cancelled_at"] or (end if end <= now else row["created_at"])
        self.bookings.append(row)
        if row["status"] == BookingStatus.completed:
            self._used(inst, start, end, user, following, len(self.bookings) - 1)

    def _used(
        self,
        inst: _Inst,
        start: datetime,
        end: datetime,
        user: int,
        following: datetime,
        index: int,
    ) -> None:
        rng = self.rng
        begin = start + timedelta(minutes=rng.randint(0, 10))
        finish = end - timedelta(minutes=rng.randint(0, 20))
        overtime = 0
        room = int((min(following, self.now) - end).total_seconds() // 60) - 5
        if rng.random() < 0.12 and room >= 10:
            overtime = rng.randint(10, min(room, 60))
            finish = end + timedelta(minutes=overtime)
        row = self._session(inst, begin, max(finish, begin), user, UsageKind.booked, overtime)
        self.usage.append((row, index))

    def _walk_up(self, inst: _Inst, start: datetime, end: datetime, regulars: list[int]) -> None:
        user = self.rng.choice(regulars)
        if user in self.demo_busy:  # the demo logins' history is their bookings alone
            return
        finish = end - timedelta(minutes=self.rng.randint(0, 15))
        row = self._session(inst, start, max(finish, start), user, UsageKind.walk_up, 0)
        self.usage.append((row, None))

    def _session(
        self,
        inst: _Inst,
        start: datetime,
        end: datetime,
        user: int,
        kind: UsageKind,
        overtime: int,
    ) -> dict[str, Any]:
        minutes = int((end - start).total_seconds() // 60)
        return {
            "instrument_id": inst.id,
            "gateway_id": None,
            "user_id": user,
            "user_badge": self.people.badge.get(user),
            "start_at": start,
            "end_at": end,
            "last_event_at": end,
            "kind": kind,
            "overtime_minutes": overtime,
            # Samples measured (what per-sample rates bill): one per 20 to 90 minutes of use.
            "samples": max(1, minutes // self.rng.randint(20, 90)),
            "kwh": round(minutes / 60 * self.rng.uniform(0.2, 3.0), 2),
            "closed_reason": "session_end",
            "created_at": end,
        }
