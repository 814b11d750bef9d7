"""The instrument's booking rules, checked before any conflict: 422 (or 403) with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from booking.errors import NotQualified, RuleViolation
from booking.intervals import Interval, on_grid
from booking.models import ACTIVE_STATUSES, Booking, SafetyInduction
from core.settings import get_settings
from core.timeutil import local_text, utcnow
from instruments.models import (
    Instrument,
    InstrumentStatus,
    Lab,
    Qualification,
    QualificationLevel,
    qualification_not_revoked,
)


def zone_of_network() -> ZoneInfo:
    return get_settings().zone


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


class Shape(Protocol):
    """The rules check_shape reads: an Instrument, or a row of its columns."""

    @property
    def status(self) -> InstrumentStatus: ...
    @property
    def slot_step_minutes(self) -> int: ...
    @property
    def min_minutes(self) -> int: ...
    @property
    def max_minutes(self) -> int: ...
    @property
    def lead_minutes(self) -> int: ...
    @property
    def horizon_days(self) -> int: ...


def check_shape(
    instrument: Shape, start: datetime, end: datetime, *, now: datetime, tz: ZoneInfo
) -> None:
    """Status, interval, slot grid, length, lead time and horizon: all without the database."""
    if instrument.status != InstrumentStatus.active:
        state = {"maintenance": "in maintenance", "retired": "retired"}.get(
            instrument.status.value, instrument.status.value
        )
        raise RuleViolation(f"the instrument is {state} and cannot be booked")
    if end <= start:
        raise RuleViolation("end must be after start")
    step = instrument.slot_step_minutes
    if not on_grid(start, step, tz):
        raise RuleViolation(
            f"start must be on the instrument's {step}-minute grid (from local midnight)"
        )
    length = _minutes(end - start)
    if length % step:
        raise RuleViolation(f"the length must be a multiple of {step} minutes")
    if length < instrument.min_minutes:
        raise RuleViolation(
            f"the instrument's shortest booking is {instrument.min_minutes} minutes"
        )
    if length > instrument.max_minutes:
        raise RuleViolation(f"the instrument's longest booking is {instrument.max_minutes} minutes")
    if start < now + timedelta(minutes=instrument.lead_minutes):
        raise RuleViolation(
            f"bookings must start at least {instrument.lead_minutes} minutes from now"
        )
    if start > now + timedelta(days=instrument.horizon_days):
        raise RuleViolation(f"bookings may start at most {instrument.horizon_days} days ahead")


def within_staffed_hours(lab: Lab, start: datetime, end: datetime, tz: ZoneInfo) -> bool:
    """[start, end) lies within one weekday's staffed hours (Monday to Friday, local)."""
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    return (
        local_start.date() == local_end.date()
        and local_start.weekday() < 5
        and local_start.time() >= lab.staffed_from
        and local_end.time() <= lab.staffed_until
    )


def qualification_problem(
    session: Session,
    instrument: Instrument,
    user_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> str | None:
    """Why the person may not use the instrument (then, for [start, end)), or None: the
    lab's safety induction first where the instrument needs it, a qualification in force
    where it needs one, and the out-of-hours level outside the lab's staffed hours."""
    if not (instrument.qualification_required or instrument.induction_required):
        return None
    now = now or utcnow()
    lab = session.get(Lab, instrument.lab_id)
    if instrument.induction_required:
        induction = session.exec(
            select(SafetyInduction).where(
                SafetyInduction.lab_id == instrument.lab_id, SafetyInduction.user_id == user_id
            )
        ).first()
        if induction is None or (induction.expires_at is not None and induction.expires_at <= now):
            return "this instrument needs the lab's safety induction first; ask the lab for it"
    if not instrument.qualification_required:
        return None
    grant = session.exec(
        select(Qualification)
        .where(
            Qualification.user_id == user_id,
            Qualification.instrument_id == instrument.id,
            qualification_not_revoked(),
        )
        .order_by(col(Qualification.id).desc())
    ).first()
    if grant is None:
        return "this instrument needs a qualification you do not hold; ask its lab"
    if grant.expires_at is not None and grant.expires_at <= now:
        return (
            f"your qualification expired on {local_text(grant.expires_at)}; "
            "ask the lab for a refresher training"
        )
    if (
        start is not None
        and end is not None
        and lab is not None
        and grant.level != QualificationLevel.out_of_hours
        and not within_staffed_hours(lab, start, end, zone_of_network())
    ):
        return (
            "outside the lab's staffed hours (Monday to Friday, "
            f"{lab.staffed_from:%H:%M}-{lab.staffed_until:%H:%M}) this instrument needs the "
            f"out-of-hours level; yours is {grant.level.value.replace('_', ' ')}"
        )
    return None


def check_qualification(
    session: Session,
    instrument: Instrument,
    user_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """403 with the reason when the person may not use the instrument (then)."""
    problem = qualification_problem(session, instrument, user_id, start=start, end=end, now=now)
    if problem:
        raise NotQualified(problem)


def iso_weeks(start: datetime, end: datetime, tz: ZoneInfo) -> list[Interval]:
    """The local ISO weeks (Monday 00:00 to Monday 00:00) that [start, end) touches, in UTC."""
    local = start.astimezone(tz).date()
    monday = local - timedelta(days=local.weekday())
    weeks: list[Interval] = []
    while True:
        s = datetime.combine(monday, time(0), tz).astimezone(UTC)
        monday += timedelta(days=7)
        e = datetime.combine(monday, time(0), tz).astimezone(UTC)
        weeks.append((s, e))
        if e >= end:
            return weeks


def _overlap(a: Interval, b: Interval) -> timedelta:
    return max(timedelta(0), min(a[1], b[1]) - max(a[0], b[0]))


def check_quota(
    session: Session,
    instrument: Instrument,
    user_id: int,
    wanted: Sequence[Interval],
    *,
    tz: ZoneInfo,
    ignore: int | None = None,
) -> None:
    """Hours per person per local ISO week on this instrument, counting active bookings."""
    quota = instrument.weekly_quota_hours
    if quota is None or not wanted:
        return
    weeks = sorted({w for s, e in wanted for w in iso_weeks(s, e, tz)})
    held_query = select(Booking.id, Booking.start_at, Booking.end_at).where(
        Booking.instrument_id == instrument.id,
        Booking.user_id == user_id,
        col(Booking.status).in_(ACTIVE_STATUSES),
        col(Booking.start_at) < weeks[-1][1],
        col(Booking.end_at) > weeks[0][0],
    )
    held = [(s, e) for booking_id, s, e in session.exec(held_query).all() if booking_id != ignore]
    limit = timedelta(hours=quota)
    for week in weeks:
        used = sum((_overlap(week, h) for h in held), timedelta(0))
        adding = sum((_overlap(week, w) for w in wanted), timedelta(0))
        if adding and used + adding > limit:
            label = week[0].astimezone(tz).strftime("%G-W%V")
            raise RuleViolation(
                f"weekly quota of {quota} h on this instrument exceeded in {label}: "
                f"{_minutes(used) / 60:g} h booked, this adds {_minutes(adding) / 60:g} h"
            )
