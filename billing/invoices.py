"""The monthly invoice run, closing a month, and payments: set-based SQL, one unit of work."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, func, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.charges import ChargeCounts, charges_create, charges_to_invoices, charges_unpriced
from billing.errors import PeriodClosed
from billing.ledger import AccountRef, entries_post_many, entry_post
from billing.models import (
    AccountKind,
    BillingPeriod,
    Charge,
    Invoice,
    InvoiceStatus,
    PeriodStatus,
    VoucherRedemption,
)
from billing.vouchers import vouchers_apply
from core.db import UTCDateTime
from core.errors import Conflict, Invalid
from core.events import emit, emit_many
from core.periods import parse_period, period_bounds
from core.settings import get_settings
from core.timeutil import utcnow
from telemetry.reconcile import usage_reconcile

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
        INSERT INTO invoice (number, payer_institution_id, account_id, period, currency,
                             status, line_count, subtotal, voucher_total, total, amount_paid,
                             payment_failures, created_at)
        SELECT 'INV-' || :period || '-' || pi.code
                 || CASE WHEN c.account_id IS NOT NULL
                         THEN '-A' || CAST(c.account_id AS VARCHAR(12)) ELSE '' END
                 || CASE WHEN c.currency <> :network THEN '-' || UPPER(c.currency) ELSE '' END,
               c.payer_institution_id, c.account_id, :period, c.currency, 'draft', 0, 0, 0, 0,
               0, 0, :now
        FROM (SELECT DISTINCT payer_institution_id, account_id, currency FROM charge_new) c
        JOIN institution pi ON pi.id = c.payer_institution_id
        WHERE NOT EXISTS (SELECT 1 FROM invoice v WHERE v.payer_institution_id =
                          c.payer_institution_id AND v.period = :period
                          AND v.currency = c.currency
                          AND COALESCE(v.account_id, 0) = COALESCE(c.account_id, 0))
        ORDER BY pi.code, c.account_id, c.currency
        """
    ).bindparams(bindparam("now", type_=UTCDateTime))
    result = session.execute(query, {"period": period, "network": network, **now_param})
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
    period_lock(session, period)
    if session.get_bind().dialect.name == "postgresql":
        # Sorts and hash aggregates of half a million rows stay in memory, not on disk.
        session.execute(text("SET LOCAL work_mem = '128MB'"))
    now = utcnow()
    # Bookings whose time is over are settled first (completed, or no-shows where a gateway
    # watched and saw nothing), so the month's charges find them.
    start, _end = period_bounds(period)
    usage_reconcile(session, now=now, since=start)
    _say(progress, f"period {period}: charging bookings, usage and fees")
    counts = charges_create(session, period=period, now=now, progress=progress)
    created = _create_invoices(session, period, {"now": now})
    _say(progress, f"invoices: {created:,} new")
    lines = charges_to_invoices(session, period=period)
    _say(progress, f"lines: {lines:,} added to invoices")
    counts = replace(counts, unpriced=charges_unpriced(session, period=period))
    _update_totals(session, period)
    session.expire_all()
    granted = vouchers_apply(session, period=period)
    _say(progress, f"vouchers: {granted:,} minor units granted")
    current = session.get(BillingPeriod, period)
    assert current is not None
    current.runs += 1
    current.last_run_at = now
    session.add(current)
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
    invoice: Invoice, vouchers: dict[int, int], by_provider: dict[int, int]
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
    for programme_id, amount in sorted(vouchers.items()):
        lines.append(
            (AccountRef(AccountKind.voucher_programme, currency, programme_id=programme_id), amount)
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
    vouchers: dict[int, dict[int, int]] = defaultdict(dict)
    for invoice_id, programme_id, amount in session.exec(
        select(
            VoucherRedemption.invoice_id,
            VoucherRedemption.programme_id,
            func.sum(VoucherRedemption.amount),
        )
        .join(Invoice, col(Invoice.id) == VoucherRedemption.invoice_id)
        .where(Invoice.period == period)
        .group_by(col(VoucherRedemption.invoice_id), col(VoucherRedemption.programme_id))
    ).all():
        vouchers[invoice_id][programme_id] = int(amount)
    entries_post_many(
        session,
        [
            (
                f"invoice:{inv.id}:finalize",
                f"invoice {inv.number}",
                invoice_entry_lines(inv, vouchers[inv.id or 0], providers[inv.id or 0]),
                inv.id,
            )
            for inv in invoices
        ],
    )
    _say(progress, f"ledger: {len(invoices):,} invoices posted")
    now = utcnow()
    session.execute(
        update(Invoice)
        .where(col(Invoice.period) == period, col(Invoice.status) == InvoiceStatus.draft)
        .values(status=InvoiceStatus.finalized, finalized_at=now)
    )
    emit_many(
        session,
        "invoice.finalized",
        [(None, _invoice_data(inv)) for inv in invoices],
        now=now,
    )
    row.status = PeriodStatus.closed
    row.closed_at = now
    session.add(row)
    session.flush()
    session.expire_all()
    _say(progress, f"closed {period}: {len(invoices):,} invoices finalized")
    return invoices


def _invoice_data(invoice: Invoice) -> dict[str, object]:
    """What an invoice event carries."""
    return {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "payer_institution_id": invoice.payer_institution_id,
        "period": invoice.period,
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "voucher_total": invoice.voucher_total,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
    }


def invoice_record_payment(
    session: Session, *, invoice: Invoice, paid_to_date: int, via: str, ref: str
) -> Invoice:
    """Record that the payer has paid `paid_to_date` of the invoice so far (Stripe reports
    a running total): the difference since the last record posts to the ledger, cash in
    and the receivable down; the whole total makes it paid, less partially paid. The same
    running total posts once, however often it is reported."""
    if invoice.status == InvoiceStatus.draft:
        raise Conflict(f"invoice {invoice.number} is still a draft; close its month first")
    if not 0 < paid_to_date <= invoice.total:
        raise Invalid(
            f"a payment of {paid_to_date} does not fit invoice {invoice.number}, whose total "
            f"is {invoice.total}"
        )
    delta = paid_to_date - invoice.amount_paid
    if delta <= 0:
        return invoice  # nothing new (a repeat, or an older report arriving late)
    entry_post(
        session,
        ref=f"invoice:{invoice.id}:paid:{paid_to_date}",
        memo=f"payment on {invoice.number} ({ref}), {paid_to_date} of {invoice.total} so far",
        lines=[
            (AccountRef(AccountKind.cash, invoice.currency, name=via), delta),
            (
                AccountRef(
                    AccountKind.payer_receivable,
                    invoice.currency,
                    institution_id=invoice.payer_institution_id,
                ),
                -delta,
            ),
        ],
        invoice_id=invoice.id,
    )
    invoice.amount_paid = paid_to_date
    if paid_to_date == invoice.total:
        invoice.status = InvoiceStatus.paid
        invoice.paid_at = utcnow()
        emit(session, "invoice.paid", lab_id=None, data=_invoice_data(invoice))
    else:
        invoice.status = InvoiceStatus.partially_paid
    session.add(invoice)
    session.flush()
    return invoice


def invoice_mark_paid(session: Session, *, invoice: Invoice, via: str, ref: str) -> Invoice:
    """Record that the whole invoice is paid (a bank transfer an administrator saw)."""
    if invoice.status == InvoiceStatus.paid:
        return invoice
    if invoice.total == 0:  # vouchers paid it all: nothing is owed, nothing posts
        if invoice.status == InvoiceStatus.draft:
            raise Conflict(f"invoice {invoice.number} is still a draft; close its month first")
        invoice.status, invoice.paid_at = InvoiceStatus.paid, utcnow()
        emit(session, "invoice.paid", lab_id=None, data=_invoice_data(invoice))
        session.add(invoice)
        session.flush()
        return invoice
    return invoice_record_payment(
        session, invoice=invoice, paid_to_date=invoice.total, via=via, ref=ref
    )


def invoice_mark_failed(session: Session, *, invoice: Invoice) -> Invoice:
    """A collection attempt failed: the receivable stays open; the invoice says so."""
    if invoice.status == InvoiceStatus.paid:
        return invoice
    invoice.status = InvoiceStatus.payment_failed
    invoice.payment_failures += 1
    session.add(invoice)
    session.flush()
    return invoice
