"""Set-based aggregation of a period's figures per instrument: the inputs of settlements,
KPIs and reports. Each function is one grouped query (two for vouchers), on either database.

"External" means the person who used (or booked) the instrument belongs to another
institution than the instrument's lab; a person with no institution counts as external,
a session with no known person does not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from admin.models import EvaluationResult, InstrumentEvaluation
from billing.models import (
    Charge,
    ClaimStatus,
    LineDecision,
    VoucherClaim,
    VoucherClaimLine,
    VoucherNotice,
    VoucherProgramme,
)
from booking.models import Booking, BookingStatus
from core.db import UTCDateTime, is_postgres
from core.models import User
from core.periods import Period
from core.settings import get_settings
from instruments.models import Instrument, Lab, OpeningHours, Qualification
from telemetry.models import BILLABLE_REVIEWS, UsageSession, UsageSource


def _at(value: datetime) -> Any:
    return sa.literal(value, UTCDateTime())


def _seconds(session: Session, start: Any, end: Any) -> Any:
    """Whole seconds from `start` to `end`, rounded, as an integer expression."""
    if is_postgres(session):
        return sa.cast(sa.func.round(sa.extract("epoch", end - start)), sa.BigInteger)
    return sa.cast(
        sa.func.round((sa.func.julianday(end) - sa.func.julianday(start)) * 86400), sa.BigInteger
    )


def _least(session: Session, a: Any, b: Any) -> Any:
    return sa.func.least(a, b) if is_postgres(session) else sa.func.min(a, b)


def _greatest(session: Session, a: Any, b: Any) -> Any:
    return sa.func.greatest(a, b) if is_postgres(session) else sa.func.max(a, b)


@dataclass(frozen=True)
class InstrumentRow:
    id: int
    code: str
    name: str
    lab_id: int
    institution_id: int
    category_id: int
    asset_value: int
    evaluation_failed: bool


def instruments_all(session: Session) -> list[InstrumentRow]:
    """Every instrument with its lab's institution and its evaluation flag."""
    failed = sa.func.coalesce(InstrumentEvaluation.result == EvaluationResult.failed, False)
    query = (
        sa.select(
            col(Instrument.id),
            col(Instrument.code),
            col(Instrument.name),
            col(Instrument.lab_id),
            col(Lab.institution_id),
            col(Instrument.category_id),
            col(Instrument.asset_value),
            failed,
        )
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .outerjoin(InstrumentEvaluation, col(InstrumentEvaluation.instrument_id) == Instrument.id)
        .order_by(col(Instrument.id))
    )
    return [
        InstrumentRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]))
        for r in session.execute(query)
    ]


def _weekday_counts(period: Period) -> Counter[int]:
    zone = get_settings().zone
    day = period.start.astimezone(zone).date()
    last = period.end.astimezone(zone).date()
    counts: Counter[int] = Counter()
    while day < last:
        counts[day.weekday()] += 1
        day += timedelta(days=1)
    return counts


def _time_seconds(session: Session, column: Any) -> Any:
    if is_postgres(session):
        return sa.extract("epoch", column)
    return sa.func.strftime("%s", column)


def _open_length(session: Session) -> Any:
    """Seconds one opening-hours row is open on its weekday."""
    return _time_seconds(session, OpeningHours.closes) - _time_seconds(session, OpeningHours.opens)


def open_seconds(session: Session, period: Period) -> dict[int, int]:
    """Seconds each instrument is published open in the period (weekly hours x weekdays)."""
    counts = _weekday_counts(period)
    per_weekday = sa.case(
        *((col(OpeningHours.weekday) == d, counts.get(d, 0)) for d in range(7)), else_=0
    )
    length = _open_length(session)
    query = sa.select(
        col(OpeningHours.instrument_id), sa.cast(sa.func.sum(per_weekday * length), sa.BigInteger)
    ).group_by(col(OpeningHours.instrument_id))
    return {i: int(s or 0) for i, s in session.execute(query)}


@dataclass(frozen=True)
class Usage:
    sessions: int
    used_seconds: int
    external_seconds: int
    outside_users: int


@dataclass(frozen=True)
class SessionTerms:
    """The expressions every figure of usage in a window is made of."""

    seconds: Any  # a session's seconds clipped to the window
    person: Any  # who used it: the session's person, else its booking's
    outsider: Any  # a person of another institution than the instrument's lab


def session_terms(session: Session, start: Any, end: Any) -> SessionTerms:
    session_end = sa.func.coalesce(UsageSession.end_at, UsageSession.last_event_at)
    person = sa.func.coalesce(UsageSession.user_id, Booking.user_id)
    return SessionTerms(
        seconds=_seconds(
            session,
            _greatest(session, UsageSession.start_at, start),
            _least(session, session_end, end),
        ),
        person=person,
        outsider=sa.and_(
            person.is_not(None), sa.func.coalesce(User.institution_id, -1) != Lab.institution_id
        ),
    )


def billable_sessions(query: sa.Select[Any], start: Any, end: Any) -> sa.Select[Any]:
    """`query` over the billable usage sessions overlapping [start, end), with their
    instrument, lab, booking and person joined (the columns SessionTerms read)."""
    session_end = sa.func.coalesce(UsageSession.end_at, UsageSession.last_event_at)
    person = sa.func.coalesce(UsageSession.user_id, Booking.user_id)
    # A gateway's record of a booking outranks the kiosk's and an operator's (as billing).
    gateway = aliased(UsageSession)
    recorded_by_gateway = (
        sa.select(col(gateway.id))
        .where(
            col(gateway.booking_id) == col(UsageSession.booking_id),
            col(gateway.source) == UsageSource.gateway,
            col(gateway.review).in_(BILLABLE_REVIEWS),
        )
        .exists()
    )
    return (
        query.select_from(UsageSession)
        .join(Instrument, col(Instrument.id) == UsageSession.instrument_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .outerjoin(Booking, col(Booking.id) == UsageSession.booking_id)
        .outerjoin(User, col(User.id) == person)
        .where(col(UsageSession.start_at) < end, session_end > start)
        # Held or dismissed sessions (a badge nobody registered...) earn no one a reward.
        .where(col(UsageSession.review).in_(BILLABLE_REVIEWS))
        .where(
            sa.or_(
                col(UsageSession.source) == UsageSource.gateway,
                col(UsageSession.booking_id).is_(None),
                ~recorded_by_gateway,
            )
        )
    )


def _usage_query(
    session: Session, start: Any, end: Any, key: Any, *, outsiders: bool = True
) -> sa.Select[Any]:
    """Sessions overlapping [start, end) grouped by `key`: count, used and external seconds
    clipped to [start, end), distinct outsiders (0 without `outsiders`)."""
    t = session_terms(session, start, end)
    query = sa.select(
        key,
        sa.func.count(),
        sa.func.sum(t.seconds),
        sa.func.sum(sa.case((t.outsider, t.seconds), else_=0)),
        # The distinct count sorts every row: left out where nobody shows it.
        sa.func.count(sa.distinct(sa.case((t.outsider, t.person), else_=None)))
        if outsiders
        else sa.literal(0),
    )
    return billable_sessions(query, start, end).group_by(key)


def usage(session: Session, period: Period) -> dict[int, Usage]:
    """Used and external seconds (clipped to the period) and distinct outsiders per instrument."""
    query = _usage_query(
        session, _at(period.start), _at(period.end), col(UsageSession.instrument_id)
    )
    return {
        row[0]: Usage(int(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0))
        for row in session.execute(query)
    }


@dataclass(frozen=True)
class Revenue:
    total: int
    external: int


def revenue(session: Session, period: Period, currency: str) -> dict[int, Revenue]:
    """Charged amounts per instrument in the period's billing months: all, and from outsiders."""
    external = col(Charge.payer_institution_id) != col(Charge.provider_institution_id)
    query = (
        sa.select(
            col(Charge.instrument_id),
            sa.func.sum(col(Charge.amount)),
            sa.func.sum(sa.case((external, Charge.amount), else_=0)),
        )
        .where(col(Charge.period).in_(period.months), col(Charge.currency) == currency)
        .group_by(col(Charge.instrument_id))
    )
    return {i: Revenue(int(t or 0), int(e or 0)) for i, t, e in session.execute(query)}


def claims_payable(
    session: Session, period: Period, currency: str, as_of: date
) -> tuple[dict[int, int], list[tuple[int, str]]]:
    """The voucher claims a settlement of `period` pays: for months up to the period's last,
    approved by the bureau, on a public notice that has run (ended before `as_of`), in this
    currency, and paid by no finalized settlement (a claim whose notice ends after its own
    month was settled is paid by the next settlement). Per instrument, what their approved
    lines come to; and each claim's (id, digest)."""
    from admin.models import Settlement, SettlementClaim, SettlementStatus

    paid = (
        sa.select(col(SettlementClaim.claim_id))
        .join(Settlement, col(Settlement.id) == SettlementClaim.settlement_id)
        .where(col(Settlement.status) == SettlementStatus.finalized)
    )
    claims = [
        (int(i), str(d))
        for i, d in session.execute(
            sa.select(col(VoucherClaim.id), col(VoucherClaim.digest))
            .join(VoucherNotice, col(VoucherNotice.id) == VoucherClaim.notice_id)
            .join(VoucherProgramme, col(VoucherProgramme.id) == VoucherClaim.programme_id)
            .where(
                col(VoucherClaim.status) == ClaimStatus.noticed,
                col(VoucherClaim.period) <= max(period.months),
                col(VoucherNotice.ends_on) < as_of,
                col(VoucherProgramme.currency) == currency,
                col(VoucherClaim.id).not_in(paid),
            )
            .order_by(col(VoucherClaim.id))
        ).all()
    ]
    if not claims:
        return {}, []
    per_instrument = session.execute(
        sa.select(col(Charge.instrument_id), sa.func.sum(col(VoucherClaimLine.amount)))
        .join(Charge, col(Charge.id) == VoucherClaimLine.charge_id)
        .where(
            col(VoucherClaimLine.claim_id).in_([i for i, _d in claims]),
            col(VoucherClaimLine.decision) == LineDecision.approved,
        )
        .group_by(col(Charge.instrument_id))
    ).all()
    return {int(i): int(a) for i, a in per_instrument}, claims


@dataclass(frozen=True)
class Bookings:
    count: int
    booked_seconds: int
    no_shows: int


# Bookings that took the instrument's time: held and kept, or held and not used.
TAKEN = (BookingStatus.confirmed, BookingStatus.completed, BookingStatus.no_show)


def _bookings_query(session: Session, start: Any, end: Any, key: Any) -> sa.Select[Any]:
    """Taken bookings overlapping [start, end) grouped by `key`: how many start inside,
    booked seconds clipped to [start, end), no-shows starting inside."""
    secs = _seconds(
        session, _greatest(session, Booking.start_at, start), _least(session, Booking.end_at, end)
    )
    starts_inside = sa.and_(col(Booking.start_at) >= start, col(Booking.start_at) < end)
    return (
        sa.select(
            key,
            sa.func.sum(sa.case((starts_inside, 1), else_=0)),
            sa.func.sum(secs),
            sa.func.sum(
                sa.case(
                    (sa.and_(starts_inside, col(Booking.status) == BookingStatus.no_show), 1),
                    else_=0,
                )
            ),
        )
        .where(
            col(Booking.status).in_(TAKEN), col(Booking.start_at) < end, col(Booking.end_at) > start
        )
        .group_by(key)
    )


def bookings(session: Session, period: Period) -> dict[int, Bookings]:
    """Per instrument: bookings starting in the period, booked seconds (clipped), no-shows."""
    query = _bookings_query(session, _at(period.start), _at(period.end), col(Booking.instrument_id))
    return {
        i: Bookings(int(n or 0), int(s or 0), int(ns or 0))
        for i, n, s, ns in session.execute(query)
    }


def trained(session: Session, period: Period) -> dict[int, int]:
    """People qualified on each instrument during the period."""
    query = (
        sa.select(col(Qualification.instrument_id), sa.func.count())
        .where(col(Qualification.granted_at) >= _at(period.start))
        .where(col(Qualification.granted_at) < _at(period.end))
        .group_by(col(Qualification.instrument_id))
    )
    return {i: int(n) for i, n in session.execute(query)}


# --- Month by month over a range: the same definitions, grouped by month in one query each ---


@dataclass(frozen=True)
class MonthFigures:
    """The whole network's figures for one month of a range."""

    open_seconds: int
    used_seconds: int
    external_seconds: int
    booked_seconds: int


def by_month(session: Session, months: list[Period]) -> dict[str, MonthFigures]:
    """Network totals per month: each month's bounds are a row of a small derived table the
    sessions and bookings of the whole range join once, so the range is read in one pass."""
    table = sa.union_all(
        *(
            sa.select(
                sa.literal(m.label).label("label"),
                _at(m.start).label("start_at"),
                _at(m.end).label("end_at"),
            )
            for m in months
        )
    ).cte("months")
    first, last = _at(months[0].start), _at(months[-1].end)
    session_end = sa.func.coalesce(UsageSession.end_at, UsageSession.last_event_at)
    # The range bounds as literals too, so the indexes narrow the scan before the join.
    used = {
        row[0]: row
        for row in session.execute(
            _usage_query(
                session, table.c.start_at, table.c.end_at, table.c.label, outsiders=False
            ).where(col(UsageSession.start_at) < last, session_end > first)
        )
    }
    booked = {
        row[0]: int(row[2] or 0)
        for row in session.execute(
            _bookings_query(session, table.c.start_at, table.c.end_at, table.c.label).where(
                col(Booking.start_at) < last, col(Booking.end_at) > first
            )
        )
    }
    # Open time is weekly: the network's open seconds per weekday, times each month's weekdays.
    weekly = {
        int(d): int(s or 0)
        for d, s in session.execute(
            sa.select(col(OpeningHours.weekday), sa.func.sum(_open_length(session))).group_by(
                col(OpeningHours.weekday)
            )
        )
    }
    out = {}
    for m in months:
        counts = _weekday_counts(m)
        u = used.get(m.label)
        out[m.label] = MonthFigures(
            open_seconds=sum(counts.get(d, 0) * s for d, s in weekly.items()),
            used_seconds=int(u[2] or 0) if u else 0,
            external_seconds=int(u[3] or 0) if u else 0,
            booked_seconds=booked.get(m.label, 0),
        )
    return out
