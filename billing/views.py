"""Reading invoices: who may see which, their numbered lines, and CSV."""

from __future__ import annotations

import io
from typing import Any

from sqlmodel import Session, col, select

from billing.errors import InvoiceNotFound, NotYourInvoice
from billing.models import Charge, ChargeKind, Invoice
from billing.projects.models import ProjectAccount
from billing.schemas import InvoiceLine, InvoicePublic, LabCharge, VoucherLine
from billing.vouchers import redemptions_by_programme
from core.errors import Forbidden
from core.exports import SafeWriter
from core.models import Role, User
from core.money import format_money
from core.periods import parse_period
from core.settings import get_settings
from instruments.models import Institution, Instrument, Lab
from instruments.service import lab_by_code

_KIND_LABEL = {
    ChargeKind.booking: "Booking",
    ChargeKind.overtime: "Overtime after booking",
    ChargeKind.no_show: "No-show fee",
    ChargeKind.late_cancel: "Late cancellation fee",
    ChargeKind.walk_up: "Walk-up use",
    ChargeKind.service: "Service request",
}


def _scope(user: User, invoice: Invoice, session: Session) -> str:
    """'all' lines, 'own' lines, or Forbidden. A project account's PI sees all of its
    invoices."""
    if user.role == Role.network_admin:
        return "all"
    if user.institution_id != invoice.payer_institution_id:
        raise NotYourInvoice()
    if user.role == Role.institution_admin:
        return "all"
    if invoice.account_id is not None:
        account = session.get(ProjectAccount, invoice.account_id)
        if account is not None and account.owner_id == user.id:
            return "all"
    return "own"


def _describe(charge: Charge, instrument: Instrument, currency: str) -> str:
    zone = get_settings().zone
    start = charge.service_start_at.astimezone(zone)
    end = charge.service_end_at.astimezone(zone)
    when = f"{start:%Y-%m-%d %H:%M}-{end:%H:%M}"
    if charge.kind == ChargeKind.overtime:
        when = f"{start:%Y-%m-%d}, past the booking's end at {end:%H:%M}"
    if charge.kind == ChargeKind.service:
        return (
            f"Service request SR-{charge.source_id}, {instrument.name} ({instrument.code}), "
            f"completed {end:%Y-%m-%d}: {charge.quantity} units, "
            f"{format_money(charge.amount, currency)} as quoted"
        )
    head = f"{_KIND_LABEL[charge.kind]}, {instrument.name} ({instrument.code}), {when}"
    if charge.unit.value == "fee":
        return head
    if charge.unit.value == "sample":
        detail = f"{charge.quantity} samples x {format_money(charge.unit_amount, currency)}"
    else:
        detail = f"{charge.quantity} min at {format_money(charge.unit_amount, currency)}/h"
    if charge.surcharge_amount:
        detail += f" + assisted {format_money(charge.surcharge_amount, currency)}"
    return f"{head}: {detail}"


def _line_fields(
    charge: Charge, instrument: Instrument, lab: Lab, person: User | None, currency: str
) -> dict[str, Any]:
    """What an invoice line and a lab's charge row both show of one charge."""
    return dict(
        line_no=charge.line_no or 0,
        description=_describe(charge, instrument, currency),
        kind=charge.kind.value,
        instrument=instrument.code,
        lab=lab.code,
        user=person.email if person else None,
        start=charge.service_start_at,
        end=charge.service_end_at,
        quantity=charge.quantity,
        unit=charge.unit.value,
        unit_amount=charge.unit_amount,
        surcharge_amount=charge.surcharge_amount,
        amount=charge.amount,
        voucher_eligible=charge.voucher_eligible,
    )


def invoice_lines(
    session: Session, invoice: Invoice, *, user_id: int | None = None
) -> list[InvoiceLine]:
    """The invoice's numbered lines, optionally only one person's."""
    query = (
        select(Charge, Instrument, Lab, User)
        .join(Instrument, col(Instrument.id) == Charge.instrument_id)
        .join(Lab, col(Lab.id) == Charge.lab_id)
        .join(User, col(User.id) == Charge.user_id, isouter=True)
        .where(Charge.invoice_id == invoice.id)
        .order_by(col(Charge.line_no))
    )
    if user_id is not None:
        query = query.where(Charge.user_id == user_id)
    return [
        InvoiceLine(**_line_fields(charge, instrument, lab, person, invoice.currency))
        for charge, instrument, lab, person in session.exec(query).all()
    ]


def lab_charges(session: Session, *, user: User, lab_code: str, period: str) -> list[LabCharge]:
    """A month's charges on a lab's instruments, for its manager and network admins."""
    parse_period(period)
    lab = lab_by_code(session, lab_code)
    if not (
        user.role == Role.network_admin or (user.role == Role.lab_manager and user.lab_id == lab.id)
    ):
        raise Forbidden("only the lab's manager sees its charges")
    rows = session.exec(
        select(Charge, Instrument, User, Institution, Invoice)  # type: ignore[call-overload]
        .join(Instrument, col(Instrument.id) == Charge.instrument_id)
        .join(Institution, col(Institution.id) == Charge.payer_institution_id)
        .join(User, col(User.id) == Charge.user_id, isouter=True)
        .join(Invoice, col(Invoice.id) == Charge.invoice_id, isouter=True)
        .where(Charge.lab_id == lab.id, Charge.period == period)
        .order_by(col(Charge.service_start_at), col(Charge.id))
    ).all()
    return [
        LabCharge(
            **_line_fields(charge, instrument, lab, person, charge.currency),
            payer=payer.code,
            payer_class=charge.payer_class.value,
            invoice=invoice.number if invoice else None,
        )
        for charge, instrument, person, payer, invoice in rows
    ]


def invoice_public(
    session: Session, invoice: Invoice, *, scope: str, user: User | None, with_lines: bool = True
) -> InvoicePublic:
    """The invoice as `scope` allows: "all" of it, or only `user`'s "own" lines and their
    subtotal (an institution's totals are for its admins)."""
    payer = session.get(Institution, invoice.payer_institution_id)
    assert payer is not None and invoice.id is not None
    own = scope == "own"
    lines = (
        invoice_lines(session, invoice, user_id=user.id if own and user else None)
        if with_lines or own
        else []
    )
    return InvoicePublic(
        id=invoice.id,
        number=invoice.number,
        period=invoice.period,
        payer={"id": payer.id, "code": payer.code, "name": payer.name},
        account_id=invoice.account_id,
        status=invoice.status.value,
        currency=invoice.currency,
        subtotal=None if own else invoice.subtotal,
        voucher_total=None if own else invoice.voucher_total,
        total=None if own else invoice.total,
        amount_paid=None if own else invoice.amount_paid,
        line_count=len(lines) if own else invoice.line_count,
        vouchers=[]
        if own
        else [
            VoucherLine(programme=p.code, name=p.name, amount=amount)
            for p, amount in redemptions_by_programme(session, invoice.id)
        ],
        lines=lines,
        lines_scope=scope,
        own_subtotal=sum(line.amount for line in lines) if own else None,
        stripe_invoice_id=None if own else invoice.stripe_invoice_id,
        finalized_at=invoice.finalized_at,
        paid_at=invoice.paid_at,
    )


def invoice_get(session: Session, *, user: User, invoice_id: int) -> tuple[Invoice, str]:
    """The invoice and how much of it `user` may see; 404 / 403 otherwise."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise InvoiceNotFound(invoice_id)
    scope = _scope(user, invoice, session)
    if (
        scope == "own"
        and not session.exec(
            select(Charge.id).where(Charge.invoice_id == invoice.id, Charge.user_id == user.id)
        ).first()
    ):
        # Being of the payer's institution is not enough: a researcher or lab manager with
        # no line on it has nothing of theirs to see.
        raise NotYourInvoice()
    return invoice, scope


def invoices_list(
    session: Session,
    *,
    user: User,
    period: str | None,
    institution: str | None = None,
    with_lines: bool = True,
) -> list[InvoicePublic]:
    """The invoices `user` may see: admins all, institution admins their institution's,
    others the lines they caused on their institution's invoices."""
    query = select(Invoice).order_by(col(Invoice.period), col(Invoice.number))
    if period is not None:
        parse_period(period)
        query = query.where(Invoice.period == period)
    if institution is not None:
        payer = session.exec(select(Institution).where(Institution.code == institution)).first()
        query = query.where(Invoice.payer_institution_id == (payer.id if payer else -1))
    if user.role != Role.network_admin:
        if user.institution_id is None:
            raise Forbidden("you belong to no institution, so no invoice is yours")
        query = query.where(Invoice.payer_institution_id == user.institution_id)
    result = []
    for invoice in session.exec(query).all():
        scope = _scope(user, invoice, session)
        view = invoice_public(session, invoice, scope=scope, user=user, with_lines=with_lines)
        if scope == "own" and not view.lines:
            continue
        if not with_lines:
            view.lines = []
        result.append(view)
    return result


CSV_COLUMNS = [
    "invoice", "line", "description", "kind", "instrument", "lab", "user", "start", "end",
    "quantity", "unit", "unit_amount", "surcharge_amount", "amount", "currency",
    "voucher_eligible",
]  # fmt: skip


def _summary_row(view: InvoicePublic, label: str, amount: int, kind: str = "") -> list[object]:
    """A row that carries only a label and an amount (subtotal, voucher, total)."""
    row: list[object] = [""] * len(CSV_COLUMNS)
    row[0], row[2], row[3] = view.number, label, kind
    row[CSV_COLUMNS.index("amount")] = amount
    row[CSV_COLUMNS.index("currency")] = view.currency
    return row


def invoice_csv(view: InvoicePublic) -> str:
    """The invoice as CSV: one row per line, then the voucher and total rows."""
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(CSV_COLUMNS)
    for line in view.lines:
        writer.writerow(
            [
                view.number,
                line.line_no,
                line.description,
                line.kind,
                line.instrument,
                line.lab,
                line.user or "",
                line.start.isoformat(),
                line.end.isoformat(),
                line.quantity,
                line.unit,
                line.unit_amount,
                line.surcharge_amount,
                line.amount,
                view.currency,
                "yes" if line.voucher_eligible else "no",
            ]
        )
    if view.lines_scope == "own":
        writer.writerow(_summary_row(view, "Your subtotal", view.own_subtotal or 0))
    if view.lines_scope == "all":
        assert view.subtotal is not None and view.total is not None
        writer.writerow(_summary_row(view, "Subtotal", view.subtotal))
        for voucher in view.vouchers:
            label = f"Innovation voucher {voucher.programme}: {voucher.name}"
            writer.writerow(_summary_row(view, label, -voucher.amount, kind="voucher"))
        writer.writerow(_summary_row(view, "Total due", view.total))
    return out.getvalue()
