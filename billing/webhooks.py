"""Stripe webhooks: verified exactly as Stripe signs them, stored once by event id."""

from __future__ import annotations

import json
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing.invoices import invoice_mark_failed, invoice_mark_paid
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


def _invoice_for(session: Session, obj: dict[str, Any]) -> Invoice | None:
    stripe_id = obj.get("id")
    if isinstance(stripe_id, str):
        found = session.exec(select(Invoice).where(Invoice.stripe_invoice_id == stripe_id)).first()
        if found is not None:
            return found
    ours = (obj.get("metadata") or {}).get("labshare_invoice_id")
    if isinstance(ours, str) and ours.isdigit():
        return session.get(Invoice, int(ours))
    return None


def _handle(session: Session, event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind not in ("invoice.paid", "invoice.payment_failed"):
        return "ignored"
    obj = (event.get("data") or {}).get("object") or {}
    invoice = _invoice_for(session, obj)
    if invoice is None:
        return "unknown invoice"
    if obj.get("currency") and obj["currency"] != invoice.currency:
        return f"currency {obj['currency']} does not match invoice {invoice.number}"
    if kind == "invoice.payment_failed":
        invoice_mark_failed(session, invoice=invoice)
        return f"payment failed on {invoice.number}"
    amount = obj.get("amount_paid")
    if not isinstance(amount, int) or isinstance(amount, bool):
        amount = invoice.total
    try:
        invoice_mark_paid(session, invoice=invoice, amount=amount, via="stripe", ref=event["id"])
    except AppError as exc:
        return exc.message[:200]
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
    row.result = _handle(session, event)
    session.add(row)
    session.flush()
    return {"received": True, "duplicate": False, "result": row.result}
