"""The monthly invoice run, closing a month, and payments: set-based SQL, one unit of work."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.charges import ChargeCounts, charges_create
from billing.errors import PeriodClosed
from billing.ledger import AccountRef, entry_post
from billing.models import (
    AccountKind,
    BillingPeriod,
    Charge,
    Invoice,
    InvoiceStatus,
    PeriodStatus,
)
from billing.periods import parse_period
from billing.vouchers import redemptions_by_programme, vouchers_apply
from core.db import UTCDateTime
from core.errors import Conflict
from core.settings import get_settings
from core.timeutil import utcnow

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class RunReport:
    period: str
    charges: ChargeCounts
    invoices_created: int
    lines_added: int
    vouchers_granted: int
    invoices: int
    seconds: float


def _say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)


def period_lock(session: Session, period: str) -> BillingPeriod:
    """The month's row, created if new and locked for this transaction; PeriodClosed if closed."""
    parse_period(period)
    row = session.get(BillingPeriod, period)
    if row is None:
        try:
            with session.begin_nested():
                session.add(BillingPeriod(period=period))
        except IntegrityError:  # another run created it
            pass
    if session.get_bind().dialect.name == "postgresql":
        # Runs of one month queue here instead of charging the same sources side by side.
        session.execute(
            text("SELECT period FROM billing_period WHERE period = :p FOR UPDATE"), {"p": period}
        )
    row = session.get(BillingPeriod, period)
    assert row is not None
    session.refresh(row)
    if row.status == PeriodStatus.closed:
        raise PeriodClosed(period)
    return row


def _create_invoices(session: Session, period: str, now_param: dict[str, object]) -> int:
    network = get_settings().currency
    query = text(
        """
        INSERT INTO invoice (number, payer_institution_id, period, currency, status, line_count,
                             subtotal, voucher_total, total, amount_paid, payment_failures,
                             created_at)
        SELECT 'INV-' || :period || '-' || pi.code
                 || CASE WHEN c.currency <> :network THEN '-' || UPPER(c.currency) ELSE '' END,
               c.payer_institution_id, :period, c.currency, 'draft', 0, 0, 0, 0, 0, 0, :now
        FROM (SELECT DISTINCT payer_institution_id, currency FROM charge
              WHERE period = :period AND invoice_id IS NULL) c
        JOIN institution pi ON pi.id = c.payer_institution_id
        WHERE NOT EXISTS (SELECT 1 FROM invoice v WHERE v.payer_institution_id =
                          c.payer_institution_id AND v.period = :period
                          AND v.currency = c.currency)
        """
    ).bindparams(bindparam("now", type_=UTCDateTime))
    result = session.execute(query, {"period": period, "network": network, **now_param})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _assign_lines(session: Session, period: str) -> int:
    """Give the month's loose charges to their draft invoice, numbered after existing lines."""
    query = text(
        """
        UPDATE charge SET invoice_id = x.invoice_id, line_no = x.base + x.rn
        FROM (
            SELECT c.id, v.id AS invoice_id, COALESCE(m.last_line, 0) AS base,
                   ROW_NUMBER() OVER (PARTITION BY v.id
                                      ORDER BY c.service_start_at, c.kind, c.id) AS rn
            FROM charge c
            JOIN invoice v ON v.payer_institution_id = c.payer_institution_id
             AND v.period = c.period AND v.currency = c.currency
            LEFT JOIN (SELECT invoice_id, MAX(line_no) AS last_line FROM charge
                       WHERE period = :period AND invoice_id IS NOT NULL
                       GROUP BY invoice_id) m ON m.invoice_id = v.id
            WHERE c.period = :period AND c.invoice_id IS NULL AND v.status = 'draft'
        ) x
        WHERE charge.id = x.id
        """
    )
    result = session.execute(query, {"period": period})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _update_totals(session: Session, period: str) -> None:
    session.execute(
        text(
            """
            UPDATE invoice SET line_count = t.n, subtotal = t.s, total = t.s - invoice.voucher_total
            FROM (SELECT invoice_id, COUNT(*) AS n, SUM(amount) AS s FROM charge
                  WHERE period = :period AND invoice_id IS NOT NULL GROUP BY invoice_id) t
            WHERE invoice.id = t.invoice_id AND invoice.status = 'draft'
            """
        ),
        {"period": period},
    )


def invoice_run(session: Session, *, period: str, progress: Progress = None) -> RunReport:
    """Charge the month's sources once and gather the charges into draft invoices."""
    started = time.perf_counter()
    row = period_lock(session, period)
    now = utcnow()
    _say(progress, f"period {period}: charging bookings, usage and fees")
    counts = charges_create(session, period=period, now=now, progress=progress)
    created = _create_invoices(session, period, {"now": now})
    _say(progress, f"invoices: {created:,} new")
    lines = _assign_lines(session, period)
    _say(progress, f"lines: {lines:,} added to invoices")
    _update_totals(session, period)
    session.expire_all()
    granted = vouchers_apply(session, period=period)
    _say(progress, f"vouchers: {granted:,} minor units granted")
    row = session.get(BillingPeriod, period)
    assert row is not None
    row.runs += 1
    row.last_run_at = now
    session.add(row)
    session.flush()
    invoices = session.exec(
        select(func.count()).select_from(Invoice).where(Invoice.period == period)
    ).one()
    return RunReport(
        period=period,
        charges=counts,
        invoices_created=created,
        lines_added=lines,
        vouchers_granted=granted,
        invoices=int(invoices),
        seconds=time.perf_counter() - started,
    )


def invoice_entry_lines(
    session: Session, invoice: Invoice, by_provider: dict[int, int]
) -> list[tuple[AccountRef, int]]:
    """The finalize entry: the payer owes the total, programmes pay vouchers, providers earn."""
    currency = invoice.currency
    lines: list[tuple[AccountRef, int]] = [
        (
            AccountRef(
                AccountKind.payer_receivable, currency, institution_id=invoice.payer_institution_id
            ),
            invoice.total,
        )
    ]
    for programme, amount in redemptions_by_programme(session, invoice.id or 0):
        lines.append(
            (AccountRef(AccountKind.voucher_programme, currency, programme_id=programme.id), amount)
        )
    for provider_id, amount in sorted(by_provider.items()):
        lines.append(
            (
                AccountRef(AccountKind.provider_revenue, currency, institution_id=provider_id),
                -amount,
            )
        )
    return lines


def invoice_close(session: Session, *, period: str, progress: Progress = None) -> list[Invoice]:
    """Run the month a last time, finalize its invoices, post them to the ledger, close it."""
    invoice_run(session, period=period, progress=progress)
    row = period_lock(session, period)
    invoices = list(
        session.exec(
            select(Invoice)
            .where(Invoice.period == period, Invoice.status == InvoiceStatus.draft)
            .order_by(col(Invoice.id))
        )
    )
    providers: dict[int, dict[int, int]] = defaultdict(dict)
    for invoice_id, provider_id, amount in session.exec(
        select(Charge.invoice_id, Charge.provider_institution_id, func.sum(Charge.amount))
        .where(Charge.period == period, col(Charge.invoice_id).is_not(None))
        .group_by(col(Charge.invoice_id), col(Charge.provider_institution_id))
    ).all():
        assert invoice_id is not None
        providers[invoice_id][provider_id] = int(amount)
    now = utcnow()
    for invoice in invoices:
        assert invoice.id is not None
        entry_post(
            session,
            ref=f"invoice:{invoice.id}:finalize",
            memo=f"invoice {invoice.number}",
            lines=invoice_entry_lines(session, invoice, providers[invoice.id]),
            invoice_id=invoice.id,
        )
        invoice.status = InvoiceStatus.finalized
        invoice.finalized_at = now
        session.add(invoice)
    row.status = PeriodStatus.closed
    row.closed_at = now
    session.add(row)
    session.flush()
    _say(progress, f"closed {period}: {len(invoices):,} invoices finalized and posted")
    return invoices


def invoice_mark_paid(
    session: Session, *, invoice: Invoice, amount: int, via: str, ref: str
) -> Invoice:
    """Record a payment: cash in, the payer's receivable down. Posts once per invoice."""
    if invoice.status == InvoiceStatus.draft:
        raise Conflict(f"invoice {invoice.number} is still a draft; close its month first")
    if invoice.status == InvoiceStatus.paid:
        return invoice
    entry_post(
        session,
        ref=f"invoice:{invoice.id}:paid",
        memo=f"payment of {invoice.number} ({ref})",
        lines=[
            (AccountRef(AccountKind.cash, invoice.currency, name=via), amount),
            (
                AccountRef(
                    AccountKind.payer_receivable,
                    invoice.currency,
                    institution_id=invoice.payer_institution_id,
                ),
                -amount,
            ),
        ],
        invoice_id=invoice.id,
    )
    invoice.status = InvoiceStatus.paid
    invoice.amount_paid = amount
    invoice.paid_at = utcnow()
    session.add(invoice)
    session.flush()
    return invoice


def invoice_mark_failed(session: Session, *, invoice: Invoice) -> Invoice:
    """A collection attempt failed: the receivable stays open; the invoice says so."""
    if invoice.status == InvoiceStatus.paid:
        return invoice
    invoice.status = InvoiceStatus.payment_failed
    invoice.payment_failures += 1
    session.add(invoice)
    session.flush()
    return invoice
