"""A thin adapter to Stripe: a customer per payer, an invoice per month, finalized.

Every call carries an idempotency key derived from our own ids, so a retry after a
crash or a timeout creates nothing twice on Stripe's side.
"""

from __future__ import annotations

from sqlmodel import Session, col, select
from stripe import StripeClient

from billing.models import Charge, Invoice, InvoiceStatus, StripeCustomer
from billing.vouchers import redemptions_by_programme
from core.errors import Conflict
from core.settings import Settings, get_settings
from core.timeutil import utcnow
from instruments.models import Institution, Instrument

DAYS_UNTIL_DUE = 30


def stripe_client(settings: Settings | None = None) -> StripeClient | None:
    """A client when LABSHARE_STRIPE_API_KEY is set (aimed at LABSHARE_STRIPE_API_BASE if
    given); None means invoices stay local."""
    settings = settings or get_settings()
    if not settings.stripe_api_key:
        return None
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return StripeClient(settings.stripe_api_key, base_addresses=base, max_network_retries=2)  # type: ignore[arg-type]


def customer_for(session: Session, client: StripeClient, institution: Institution) -> str:
    """The payer's Stripe customer id, created once."""
    row = session.get(StripeCustomer, institution.id)
    if row is not None:
        return row.stripe_customer_id
    customer = client.v1.customers.create(
        params={
            "name": institution.name,
            "metadata": {
                "labshare_institution_id": str(institution.id),
                "labshare_institution_code": institution.code,
            },
        },
        options={"idempotency_key": f"labshare-customer-{institution.id}"},
    )
    assert institution.id is not None
    session.add(StripeCustomer(institution_id=institution.id, stripe_customer_id=customer.id))
    session.flush()
    return customer.id


def invoice_send(session: Session, client: StripeClient, invoice: Invoice) -> Invoice:
    """Create the invoice and its items on Stripe and finalize it so Stripe can collect it."""
    if invoice.status not in (InvoiceStatus.finalized, InvoiceStatus.sent):
        raise Conflict(
            f"invoice {invoice.number} is {invoice.status.value}; only a final invoice is sent"
        )
    if invoice.status == InvoiceStatus.sent:
        return invoice
    payer = session.get(Institution, invoice.payer_institution_id)
    assert payer is not None and invoice.id is not None
    customer_id = customer_for(session, client, payer)
    metadata = {
        "labshare_invoice_id": str(invoice.id),
        "labshare_invoice_number": invoice.number,
        "period": invoice.period,
    }
    remote = client.v1.invoices.create(
        params={
            "customer": customer_id,
            "currency": invoice.currency,
            "collection_method": "send_invoice",
            "days_until_due": DAYS_UNTIL_DUE,
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "description": f"labshare instrument use, {invoice.period} ({invoice.number})",
            "metadata": metadata,
        },
        options={"idempotency_key": f"labshare-invoice-{invoice.id}"},
    )
    rows = session.exec(
        select(Charge, Instrument)
        .join(Instrument, col(Instrument.id) == Charge.instrument_id)
        .where(Charge.invoice_id == invoice.id, col(Charge.amount) > 0)
        .order_by(col(Charge.line_no))
    ).all()
    for charge, instrument in rows:
        client.v1.invoice_items.create(
            params={
                "customer": customer_id,
                "invoice": remote.id,
                "amount": charge.amount,
                "currency": invoice.currency,
                "description": f"{charge.line_no}. {charge.kind.value.replace('_', ' ')}, "
                f"{instrument.name} ({instrument.code})",
                "metadata": {
                    "labshare_charge_id": str(charge.id),
                    "labshare_invoice_id": str(invoice.id),
                    "line_no": str(charge.line_no),
                },
            },
            options={"idempotency_key": f"labshare-charge-{charge.id}"},
        )
    for programme, amount in redemptions_by_programme(session, invoice.id):
        client.v1.invoice_items.create(
            params={
                "customer": customer_id,
                "invoice": remote.id,
                "amount": -amount,
                "currency": invoice.currency,
                "description": f"Innovation voucher {programme.code}: {programme.name}",
                "metadata": {
                    "labshare_invoice_id": str(invoice.id),
                    "voucher_programme": programme.code,
                },
            },
            options={"idempotency_key": f"labshare-voucher-{invoice.id}-{programme.id}"},
        )
    final = client.v1.invoices.finalize_invoice(
        remote.id,
        params={"auto_advance": True},
        options={"idempotency_key": f"labshare-finalize-{invoice.id}"},
    )
    invoice.stripe_invoice_id = remote.id
    invoice.stripe_hosted_url = getattr(final, "hosted_invoice_url", None)
    invoice.status = InvoiceStatus.sent
    invoice.sent_at = utcnow()
    session.add(invoice)
    session.flush()
    return invoice


def invoices_to_send(session: Session, *, period: str) -> list[int]:
    """Ids of the month's final invoices not yet on Stripe."""
    rows = session.exec(
        select(Invoice.id)
        .where(
            Invoice.period == period,
            Invoice.status == InvoiceStatus.finalized,
            col(Invoice.total) > 0,
        )
        .order_by(col(Invoice.id))
    ).all()
    return [r for r in rows if r is not None]
