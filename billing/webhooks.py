"""Stripe webhooks: verified exactly as Stripe signs them, stored once by event id."""

from __future__ import annotations

import json
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing.invoices import invoice_mark_failed, invoice_record_payment
from billing.models import Invoice, StripeEvent
from core.errors import AppError
from core.settings import get_settings

# Seconds a signature's timestamp may be old: Stripe's own default.
TOLERANCE = stripe.Webhook.DEFAULT_TOLERANCE


class BadSignature(AppError):
    status_code = 400


def _verify(payload: bytes, signature: str | None) -> dict[str, Any]:
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise BadSignature("webhooks are not configured: LABSHARE_STRIPE_WEBHOOK_SECRET is unset")
    if not signature:
        raise BadSignature("missing Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
        stripe.Webhook.construct_event(text, signature, secret, tolerance=TOLERANCE)
        data = json.loads(text)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"bad Stripe-Signature: {exc.user_message or exc}")
    except (ValueError, UnicodeDecodeError):
        raise BadSignature("the body is not a JSON event")
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or "type" not in data:
        raise BadSignature("the body is not a Stripe event")
    return data


def _amount(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _handle(session: Session, event: dict[str, Any]) -> str:
    """What the event changes; every refusal is recorded and changes nothing (Stripe still
    gets its 2xx, so it stops retrying an event we will never accept)."""
    if event.get("account"):
        return "an event of a connected account, not of our invoices: ignored"
    kind = event["type"]
    if kind not in ("invoice.paid", "invoice.payment_failed"):
        return "ignored"
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(obj, dict) or obj.get("object", "invoice") != "invoice":
        return "refused: the event's object is not an invoice"
    stripe_id = obj.get("id")
    # Only the Stripe invoice id we stored when we created it says which invoice this is:
    # metadata is whatever the sender wrote.
    invoice = (
        session.exec(select(Invoice).where(Invoice.stripe_invoice_id == stripe_id)).first()
        if isinstance(stripe_id, str)
        else None
    )
    if invoice is None:
        return f"refused: no invoice of ours has the Stripe id {str(stripe_id)[:60]!r}"
    if obj.get("currency") != invoice.currency:
        return f"refused: currency {str(obj.get('currency'))[:8]!r} is not {invoice.currency}"
    due = _amount(obj.get("amount_due"))
    if "amount_due" in obj and due != invoice.total:
        return f"refused: amount_due {obj.get('amount_due')!r} is not the {invoice.total} billed"
    if kind == "invoice.payment_failed":
        invoice_mark_failed(session, invoice=invoice)
        return f"payment failed on {invoice.number}"
    paid = _amount(obj.get("amount_paid"))
    if paid is None or not 0 < paid <= invoice.total:
        return (
            f"refused: amount_paid {str(obj.get('amount_paid'))[:20]!r} does not fit the "
            f"{invoice.total} billed on {invoice.number}"
        )
    try:
        invoice_record_payment(
            session, invoice=invoice, paid_to_date=paid, via="stripe", ref=event["id"]
        )
    except AppError as exc:
        return f"refused: {exc.message}"[:200]
    if paid < invoice.total:
        return f"partial payment on {invoice.number}: {paid} of {invoice.total}"
    return f"paid {invoice.number}"


def webhook_receive(session: Session, *, payload: bytes, signature: str | None) -> dict[str, Any]:
    """Verify, store by event id and act once; a repeated event id changes nothing."""
    event = _verify(payload, signature)
    if session.get(StripeEvent, event["id"]) is not None:
        return {"received": True, "duplicate": True}
    row = StripeEvent(id=event["id"], type=str(event["type"])[:100], payload=event)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same event delivered twice at once: the other one acts
        return {"received": True, "duplicate": True}
    row.result = _handle(session, event)[:200]
    session.add(row)
    session.flush()
    return {"received": True, "duplicate": False, "result": row.result}
