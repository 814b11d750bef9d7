"""Innovation vouchers: a programme pays part of an eligible small company's invoice.

A programme covers `coverage_bp` basis points of the eligible lines (use of other
institutions' instruments by a flagged small company), never more than the
company's yearly cap nor the programme's remaining budget. The rows that hold
those running totals are locked while a grant is decided (SELECT ... FOR UPDATE
on PostgreSQL; SQLite's write lock serialises writers), and CHECK constraints
refuse any total past its limit, so concurrent runs cannot overspend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.models import (
    Charge,
    Invoice,
    InvoiceStatus,
    VoucherAllowance,
    VoucherProgramme,
    VoucherRedemption,
)
from billing.periods import parse_period, period_first_day
from core.errors import Conflict, Invalid, NotFound
from core.settings import CURRENCY_EXPONENTS


@dataclass(frozen=True)
class ProgrammeIn:
    code: str
    name: str
    currency: str
    budget: int
    coverage_bp: int
    company_yearly_cap: int
    starts_on: date
    ends_on: date


def programme_create(session: Session, *, data: ProgrammeIn) -> VoucherProgramme:
    """Open a voucher programme (network administrators)."""
    currency = data.currency.lower()
    if currency not in CURRENCY_EXPONENTS:
        raise Invalid(f"unknown currency {data.currency!r}")
    if data.budget <= 0 or data.company_yearly_cap <= 0:
        raise Invalid("budget and company_yearly_cap must be positive")
    if not 0 < data.coverage_bp <= 10000:
        raise Invalid("coverage_bp must be between 1 and 10000 (basis points)")
    if data.ends_on < data.starts_on:
        raise Invalid("ends_on is before starts_on")
    if session.exec(select(VoucherProgramme).where(VoucherProgramme.code == data.code)).first():
        raise Conflict(f"a voucher programme with the code {data.code!r} exists")
    programme = VoucherProgramme(
        code=data.code,
        name=data.name,
        currency=currency,
        budget=data.budget,
        coverage_bp=data.coverage_bp,
        company_yearly_cap=data.company_yearly_cap,
        starts_on=data.starts_on,
        ends_on=data.ends_on,
    )
    session.add(programme)
    session.flush()
    return programme


def programme_get(session: Session, programme_id: int) -> VoucherProgramme:
    programme = session.get(VoucherProgramme, programme_id)
    if programme is None:
        raise NotFound(f"no voucher programme {programme_id}")
    return programme


def programmes_list(session: Session) -> list[VoucherProgramme]:
    """Every programme, newest first."""
    return list(session.exec(select(VoucherProgramme).order_by(col(VoucherProgramme.id).desc())))


def _lock(session: Session, statement: str, params: dict[str, object]) -> None:
    # Row locks on PostgreSQL; on SQLite the transaction already holds the write lock.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(statement + " FOR UPDATE"), params)


def _allowance(
    session: Session, programme: VoucherProgramme, institution_id: int, year: int
) -> VoucherAllowance:
    key = {"p": programme.id, "i": institution_id, "y": year}
    allowance = session.get(VoucherAllowance, (programme.id, institution_id, year))
    if allowance is None:
        try:
            with session.begin_nested():
                allowance = VoucherAllowance(
                    programme_id=programme.id,
                    institution_id=institution_id,
                    year=year,
                    cap=programme.company_yearly_cap,
                )
                session.add(allowance)
        except IntegrityError:  # created concurrently
            allowance = None
    _lock(
        session,
        "SELECT used FROM voucher_allowance WHERE programme_id = :p AND institution_id = :i "
        "AND year = :y",
        key,
    )
    allowance = session.get(VoucherAllowance, (programme.id, institution_id, year))
    assert allowance is not None
    session.refresh(allowance)
    return allowance


def grant(
    session: Session, *, programme: VoucherProgramme, invoice: Invoice, eligible: int, wanted: int
) -> int:
    """Grant up to `wanted` on `invoice` within the cap and budget; returns what was granted."""
    year, _ = parse_period(invoice.period)
    _lock(session, "SELECT spent FROM voucher_programme WHERE id = :p", {"p": programme.id})
    session.refresh(programme)
    allowance = _allowance(session, programme, invoice.payer_institution_id, year)
    amount = min(wanted, allowance.cap - allowance.used, programme.budget - programme.spent)
    if amount <= 0:
        return 0
    allowance.used += amount
    programme.spent += amount
    session.add(
        VoucherRedemption(
            programme_id=programme.id,
            invoice_id=invoice.id,
            institution_id=invoice.payer_institution_id,
            year=year,
            eligible_amount=eligible,
            amount=amount,
        )
    )
    session.add_all([allowance, programme])
    session.flush()
    return amount


def vouchers_apply(session: Session, *, period: str) -> int:
    """Apply active programmes to the month's draft invoices; returns the amount granted now.

    Re-runs grant only the difference that new lines earned, never twice.
    """
    first_day = period_first_day(period)
    programmes = session.exec(
        select(VoucherProgramme)
        .where(VoucherProgramme.starts_on <= first_day, VoucherProgramme.ends_on >= first_day)
        .order_by(col(VoucherProgramme.id))
    ).all()
    if not programmes:
        return 0
    eligible_rows = session.exec(
        select(Invoice, func.sum(Charge.amount))
        .join(Charge, col(Charge.invoice_id) == Invoice.id)
        .where(
            Invoice.period == period,
            Invoice.status == InvoiceStatus.draft,
            col(Charge.voucher_eligible).is_(True),
        )
        .group_by(col(Invoice.id))
        .order_by(col(Invoice.id))
    ).all()
    granted_total = 0
    for invoice, eligible_sum in eligible_rows:
        eligible = int(eligible_sum or 0)
        covered = dict(
            session.exec(
                select(VoucherRedemption.programme_id, func.sum(VoucherRedemption.amount))
                .where(VoucherRedemption.invoice_id == invoice.id)
                .group_by(col(VoucherRedemption.programme_id))
            ).all()
        )
        for programme in programmes:
            if programme.currency != invoice.currency:
                continue
            already = int(covered.get(programme.id, 0))
            room = eligible - sum(int(v) for v in covered.values())
            wanted = min(eligible * programme.coverage_bp // 10000 - already, room)
            if wanted <= 0:
                continue
            amount = grant(
                session, programme=programme, invoice=invoice, eligible=eligible, wanted=wanted
            )
            if amount:
                covered[programme.id] = already + amount
                invoice.voucher_total += amount
                invoice.total = invoice.subtotal - invoice.voucher_total
                session.add(invoice)
                granted_total += amount
        session.flush()
    return granted_total


def redemptions_by_programme(
    session: Session, invoice_id: int
) -> list[tuple[VoucherProgramme, int]]:
    """What each programme pays on an invoice."""
    rows = session.exec(
        select(VoucherProgramme, func.sum(VoucherRedemption.amount))
        .join(VoucherRedemption, col(VoucherRedemption.programme_id) == VoucherProgramme.id)
        .where(VoucherRedemption.invoice_id == invoice_id)
        .group_by(col(VoucherProgramme.id))
        .order_by(col(VoucherProgramme.id))
    ).all()
    return [(programme, int(total)) for programme, total in rows]
