"""The yearly sharing assessment (开放共享评价考核) of large instruments, as a provincial
platform takes it: per instrument and per institution, for instruments whose original value
is at least the threshold (500,000 CNY nationally).

Effective machine-hours are the billable usage sessions' hours clipped to the year, split
three ways that add up: *training* (a person using an instrument that requires a
qualification before holding it: supervised use while being trained), then *external*
(people of another institution), and *own* (the rest). External service hours are the
external part. Units served are the distinct other institutions whose people used it,
outside users the distinct people. People trained are the qualifications granted in the
year. Revenue is what billing charged for it in the year's months; voucher revenue the part
of that which innovation vouchers paid (each redemption split over its invoice's eligible
charges, largest remainder).
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import astuple, dataclass, fields
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook
from sqlmodel import Session, col

from admin import figures as fig
from billing.models import Invoice, VoucherRedemption
from billing.vouchers import charge_shares
from core.exports import csv_text, sheet_append
from core.models import User
from core.periods import Period
from core.settings import CURRENCY_EXPONENTS
from instruments.models import Institution, Instrument, Lab, Qualification
from telemetry.models import UsageSession

# The national threshold for a "large" instrument, in major units of CNY.
LARGE_INSTRUMENT_CNY = 500_000


@dataclass(frozen=True)
class InstrumentLine:
    instrument_code: str
    instrument_name: str
    classification_code: str
    commissioned_on: str
    original_value: int  # minor units
    lab: str
    institution: str
    effective_hours: float
    own_hours: float
    external_hours: float
    training_hours: float
    external_service_hours: float
    units_served: int
    outside_users: int
    people_trained: int
    revenue: int
    voucher_revenue: int
    currency: str


@dataclass(frozen=True)
class InstitutionLine:
    institution_code: str
    institution_name: str
    instruments: int
    original_value: int
    effective_hours: float
    own_hours: float
    external_hours: float
    training_hours: float
    external_service_hours: float
    units_served: int
    outside_users: int
    people_trained: int
    revenue: int
    voucher_revenue: int
    currency: str


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


@dataclass(frozen=True)
class _Use:
    """Seconds of use, of training and of external use; distinct outside people and units."""

    used: float = 0
    training: float = 0
    external: float = 0
    people: int = 0
    units: int = 0

    def columns(self) -> tuple[float, float, float, float, float, int, int]:
        """Effective, own, external, training and external service hours; units served and
        outside users: in the lines' order."""
        own = self.used - self.training - self.external
        return (_hours(self.used), _hours(own), _hours(self.external), _hours(self.training),
                _hours(self.external), self.units, self.people)  # fmt: skip


def _split_usage(session: Session, period: Period, key: Any, ids: list[int]) -> dict[int, _Use]:
    """Per `key` (instrument or institution): effective, training and external seconds, and
    the distinct outside people and institutions."""
    start, end = fig._at(period.start), fig._at(period.end)
    t = fig.session_terms(session, start, end)
    qualified = sa.exists().where(
        col(Qualification.instrument_id) == UsageSession.instrument_id,
        col(Qualification.user_id) == t.person,
        col(Qualification.granted_at) <= UsageSession.start_at,
    )
    training = sa.and_(
        col(Instrument.qualification_required).is_(True), t.person.is_not(None), ~qualified
    )
    external = sa.and_(t.outsider, sa.not_(training))
    query = sa.select(
        key,
        sa.func.sum(t.seconds),
        sa.func.sum(sa.case((training, t.seconds), else_=0)),
        sa.func.sum(sa.case((external, t.seconds), else_=0)),
        sa.func.count(sa.distinct(sa.case((t.outsider, t.person), else_=None))),
        sa.func.count(sa.distinct(sa.case((t.outsider, User.institution_id), else_=None))),
    )
    query = fig.billable_sessions(query, start, end).where(col(Instrument.id).in_(ids))
    query = query.group_by(key)
    return {
        int(r[0]): _Use(float(r[1] or 0), float(r[2] or 0), float(r[3] or 0), int(r[4]), int(r[5]))
        for r in session.execute(query)
    }


def voucher_revenue(session: Session, period: Period, currency: str) -> dict[int, int]:
    """What vouchers paid of each instrument's charges in the period's months: each
    redemption split over its invoice's eligible charges in proportion to their amounts."""
    redeemed = (
        sa.select(col(VoucherRedemption.invoice_id), sa.func.sum(col(VoucherRedemption.amount)))
        .join(Invoice, col(Invoice.id) == VoucherRedemption.invoice_id)
        .where(col(Invoice.period).in_(period.months), col(Invoice.currency) == currency)
        .group_by(col(VoucherRedemption.invoice_id))
    )
    totals = [(int(i), None, int(a)) for i, a in session.execute(redeemed)]
    out: dict[int, int] = defaultdict(int)
    for share in charge_shares(session, totals):
        out[share.instrument_id] += share.amount
    return dict(out)


def assessment(
    session: Session, *, year: int, currency: str, min_value: int | None = None
) -> tuple[list[InstrumentLine], list[InstitutionLine]]:
    """The year's assessment lines, per instrument (by institution, then code) and per
    institution. `min_value` in minor units: the national 500,000 CNY by default."""
    period = Period.parse(str(year), allow_year=True)
    if min_value is None:
        min_value = LARGE_INSTRUMENT_CNY * 10 ** CURRENCY_EXPONENTS.get(currency, 2)
    rows = session.execute(
        sa.select(
            col(Instrument.id), col(Instrument.code), col(Instrument.name),
            col(Instrument.classification_code), col(Instrument.commissioned_on),
            col(Instrument.asset_value), col(Lab.code), col(Lab.institution_id),
        )
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(col(Instrument.asset_value) >= min_value)
    ).all()  # fmt: skip
    ids = [int(r[0]) for r in rows]
    institutions = {
        int(i): (code, name)
        for i, code, name in session.execute(
            sa.select(col(Institution.id), col(Institution.code), col(Institution.name))
        )
    }
    if not ids:
        return [], []
    per_instrument = _split_usage(session, period, col(UsageSession.instrument_id), ids)
    per_institution = _split_usage(session, period, col(Lab.institution_id), ids)
    money = fig.revenue(session, period, currency)
    vouchers = voucher_revenue(session, period, currency)
    trained = fig.trained(session, period)
    lines = []
    for r in rows:
        iid = int(r[0])
        revenue = money[iid].total if iid in money else 0
        lines.append(
            InstrumentLine(
                r[1], r[2], r[3] or "", r[4].isoformat() if r[4] else "", int(r[5]), r[6],
                institutions[int(r[7])][0], *per_instrument.get(iid, _Use()).columns(),
                trained.get(iid, 0), revenue, vouchers.get(iid, 0), currency,
            )
        )  # fmt: skip
    lines.sort(key=lambda line: (line.institution, line.instrument_code))
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for line in lines:
        acc = sums[line.institution]
        acc[0] += 1
        acc[1] += line.original_value
        acc[2] += line.people_trained
        acc[3] += line.revenue
        acc[4] += line.voucher_revenue
    by_code = {code: i for i, (code, _n) in institutions.items()}
    totals = []
    for code in sorted(sums):
        n, value, trained_n, revenue, voucher = sums[code]
        totals.append(
            InstitutionLine(
                code, institutions[by_code[code]][1], n, value,
                *per_institution.get(by_code[code], _Use()).columns(),
                trained_n, revenue, voucher, currency,
            )
        )  # fmt: skip
    return lines, totals


def _header(kind: type) -> list[str]:
    return [f.name for f in fields(kind)]


def assessment_files(
    session: Session, *, year: int, currency: str, min_value: int | None = None
) -> tuple[str, str, bytes]:
    """The instruments' CSV, the institutions' CSV, and a workbook with both sheets."""
    lines, totals = assessment(session, year=year, currency=currency, min_value=min_value)
    instruments_csv = csv_text(_header(InstrumentLine), (list(astuple(x)) for x in lines))
    institutions_csv = csv_text(_header(InstitutionLine), (list(astuple(x)) for x in totals))
    book = Workbook()
    first = book.active
    first.title = "Instruments"
    sheets: list[tuple[Any, type, list[Any]]] = [
        (first, InstrumentLine, list(lines)),
        (book.create_sheet("Institutions"), InstitutionLine, list(totals)),
    ]
    for sheet, kind, rows in sheets:
        sheet_append(sheet, _header(kind))
        for row in rows:
            sheet_append(sheet, list(astuple(row)))
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return instruments_csv, institutions_csv, out.getvalue()
