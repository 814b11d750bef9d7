"""Paying a finalized settlement: a Stripe Connect transfer per institution when Stripe is
configured and the institution has a connected account, a payout record otherwise."""

from __future__ import annotations

from typing import Any

import stripe
from sqlmodel import Session, col, select

from admin.models import (
    ConnectedAccount,
    Payout,
    PayoutStatus,
    SettlementInstitution,
    SettlementStatus,
)
from admin.settlement import settlement_get
from admin.settlement_ledger import payout_post
from core.audit import audit_record
from core.errors import Conflict, Invalid
from core.models import utcnow
from core.settings import get_settings
from instruments.models import Institution


def stripe_client() -> stripe.StripeClient | None:
    """A Stripe client when LABSHARE_STRIPE_API_KEY is set (pointed at the override base)."""
    settings = get_settings()
    if not settings.stripe_api_key:
        return None
    kwargs: dict[str, Any] = {}
    if settings.stripe_api_base:
        kwargs["base_addresses"] = {"api": settings.stripe_api_base}
    return stripe.StripeClient(settings.stripe_api_key, max_network_retries=2, **kwargs)


def connected_account_set(
    session: Session, *, institution_id: int, stripe_account_id: str, actor_id: int | None
) -> ConnectedAccount:
    """Record the Stripe Connect account an institution is paid into; audited."""
    if session.get(Institution, institution_id) is None:
        raise Invalid(f"no institution {institution_id}")
    if not stripe_account_id.startswith("acct_"):
        raise Invalid("a Stripe Connect account id starts with acct_")
    row = session.get(ConnectedAccount, institution_id)
    before = {"stripe_account_id": row.stripe_account_id} if row else None
    if row is None:
        row = ConnectedAccount(institution_id=institution_id, stripe_account_id=stripe_account_id)
    row.stripe_account_id = stripe_account_id
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor_id,
        action="connected_account.set",
        entity="institution",
        entity_id=institution_id,
        before=before,
        after={"stripe_account_id": stripe_account_id},
    )
    return row


def _transfer(
    client: stripe.StripeClient, payout: Payout, account: str, period: str
) -> tuple[PayoutStatus, str | None, str | None]:
    try:
        transfer = client.v1.transfers.create(
            params={
                "amount": payout.amount,
                "currency": payout.currency,
                "destination": account,
                "transfer_group": f"settlement-{payout.settlement_id}",
                "description": f"labshare sharing settlement {period}",
                "metadata": {
                    "settlement_id": str(payout.settlement_id),
                    "institution_id": str(payout.institution_id),
                },
            },
            # A retry of the same payout never pays twice.
            options={"idempotency_key": f"labshare-payout-{payout.id}-{payout.attempts}"},
        )
    except stripe.StripeError as exc:
        return PayoutStatus.failed, None, (exc.user_message or str(exc))[:500]
    return PayoutStatus.paid, transfer.id, None


def settlement_pay(session: Session, *, settlement_id: int, actor_id: int | None) -> list[Payout]:
    """Pay every institution its reward plus reimbursement once; retries only failed ones."""
    settlement = settlement_get(session, settlement_id, lock=True)
    if settlement.status != SettlementStatus.finalized:
        raise Conflict(f"settlement {settlement_id} is a preview: finalize it before paying out")
    client = stripe_client()
    lines = session.exec(
        select(SettlementInstitution)
        .where(SettlementInstitution.settlement_id == settlement_id)
        .order_by(col(SettlementInstitution.institution_id))
    ).all()
    existing = {
        p.institution_id: p
        for p in session.exec(select(Payout).where(Payout.settlement_id == settlement_id))
    }
    accounts = {
        a.institution_id: a.stripe_account_id for a in session.exec(select(ConnectedAccount))
    }
    for line in lines:
        amount = line.reward + line.voucher_reimbursement
        payout = existing.get(line.institution_id)
        if amount <= 0 or (payout is not None and payout.status != PayoutStatus.failed):
            continue
        if payout is None:
            payout = Payout(
                settlement_id=settlement_id,
                institution_id=line.institution_id,
                amount=amount,
                currency=settlement.currency,
                status=PayoutStatus.recorded,
            )
            session.add(payout)
            session.flush()
        account = accounts.get(line.institution_id)
        if client is not None and account is not None:
            payout.attempts += 1
            status, transfer_id, error = _transfer(client, payout, account, settlement.period)
        else:
            status, transfer_id, error = PayoutStatus.recorded, None, None
        payout.status, payout.stripe_transfer_id, payout.error = status, transfer_id, error
        payout.updated_at = utcnow()
        session.add(payout)
        session.flush()
        if status != PayoutStatus.failed:
            payout_post(session, payout=payout)
        audit_record(
            session,
            actor_id=actor_id,
            action=f"payout.{status.value}",
            entity="payout",
            entity_id=payout.id,
            after={
                "settlement_id": settlement_id,
                "institution_id": line.institution_id,
                "amount": amount,
                "currency": settlement.currency,
                "stripe_transfer_id": transfer_id,
                "error": error,
            },
        )
        existing[line.institution_id] = payout
    return sorted(existing.values(), key=lambda p: p.institution_id)
