"""Billing's HTTP routes: rate cards, charging policies, invoices, vouchers, ledger, Stripe."""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response

from billing import rates, service_feed, views, vouchers
from billing.account_charges import booking_charge_to
from billing.invoices import invoice_mark_paid
from billing.ledger import balances, ledger_totals
from billing.projects.api import link_public
from billing.projects.schemas import ChargeTo, LinkPublic
from billing.schemas import (
    AssistedIn,
    ChargingPolicyIn,
    ChargingPolicyPublic,
    InvoicePublic,
    LabCharge,
    ProgrammeCreate,
    ProgrammePublic,
    RateCardEnd,
    RateCardIn,
    RateCardPublic,
)
from billing.webhooks import webhook_receive
from core.deps import CurrentUser, NetworkAdmin, SessionDep
from core.errors import NotFound, Unauthorized
from core.params import only_params
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from core.timeutil import OptionalTimeQuery, parse_aware
from instruments.models import CODE_PATTERN

router = APIRouter(route_class=UnitOfWorkRoute, tags=["billing"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
LabCode = Annotated[str, Path(pattern=CODE_PATTERN)]


@router.post("/rate-cards", response_model=RateCardPublic, status_code=201)
def create_rate_card(session: SessionDep, user: CurrentUser, data: RateCardIn) -> RateCardPublic:
    """Add a rate card for an instrument or a category default (the lab's manager)."""
    card = rates.rate_card_create(session, user=user, data=data)
    return rates.rate_card_public(session, card)


@router.get(
    "/rate-cards",
    response_model=list[RateCardPublic],
    dependencies=[Depends(only_params("instrument_id", "lab", "at"))],
)
def list_rate_cards(
    session: SessionDep,
    instrument_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    lab: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    at: OptionalTimeQuery = None,
) -> list[RateCardPublic]:
    """Rate cards, with their history, of an instrument (own and category defaults) or a lab."""
    moment = parse_aware(at, field="at") if at else None
    cards = rates.rate_cards_list(session, instrument_id=instrument_id, lab=lab, at=moment)
    return [rates.rate_card_public(session, card) for card in cards]


@router.post("/rate-cards/{card_id}/end", response_model=RateCardPublic)
def end_rate_card(
    session: SessionDep, user: CurrentUser, card_id: Id, data: RateCardEnd
) -> RateCardPublic:
    """End a rate card at a future time (the lab's manager)."""
    card = rates.rate_card_end(session, user=user, card_id=card_id, effective_to=data.effective_to)
    return rates.rate_card_public(session, card)


@router.get("/labs/{lab_code}/charging-policy", response_model=ChargingPolicyPublic)
def get_policy(session: SessionDep, lab_code: LabCode) -> ChargingPolicyPublic:
    """How a lab bills: booked, used or the larger time; no-show and late-cancellation fees."""
    return rates.policy_get(session, lab_code=lab_code)


@router.put("/labs/{lab_code}/charging-policy", response_model=ChargingPolicyPublic)
def put_policy(
    session: SessionDep, user: CurrentUser, lab_code: LabCode, data: ChargingPolicyIn
) -> ChargingPolicyPublic:
    """Set the lab's charging policy (its manager)."""
    return rates.policy_set(session, user=user, lab_code=lab_code, data=data)


@router.get(
    "/labs/{lab_code}/charges",
    response_model=list[LabCharge],
    dependencies=[Depends(only_params("period"))],
)
def get_lab_charges(
    session: SessionDep,
    user: CurrentUser,
    lab_code: LabCode,
    period: Annotated[str, Query(max_length=7, description="YYYY-MM")],
) -> list[LabCharge]:
    """Who used the lab's instruments in a month and what it cost them (the lab's manager)."""
    return views.lab_charges(session, user=user, lab_code=lab_code, period=period)


@router.put("/billing/bookings/{booking_id}/assisted", response_model=AssistedIn)
def put_assisted(
    session: SessionDep, user: CurrentUser, booking_id: Id, data: AssistedIn
) -> AssistedIn:
    """Mark a booking as assisted by lab staff, before it is charged (the lab's manager)."""
    rates.assisted_set(session, user=user, booking_id=booking_id, assisted=data.assisted)
    return data


@router.get(
    "/invoices",
    response_model=list[InvoicePublic],
    dependencies=[Depends(only_params("period", "institution", "lines"))],
)
def list_invoices(
    session: SessionDep,
    user: CurrentUser,
    period: Annotated[str | None, Query(max_length=7)] = None,
    institution: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    lines: Annotated[bool, Query(description="false: totals only (a month can be large)")] = True,
) -> list[InvoicePublic]:
    """Invoices with lines: all for network admins, the institution's for its admins, and a
    researcher's own lines on their institution's invoices."""
    return views.invoices_list(
        session, user=user, period=period, institution=institution, with_lines=lines
    )


@router.get("/invoices/{invoice_id:int}.csv", response_class=Response)
def invoice_csv(session: SessionDep, user: CurrentUser, invoice_id: int) -> Response:
    """One invoice as CSV."""
    invoice, scope = views.invoice_get(session, user=user, invoice_id=invoice_id)
    view = views.invoice_public(session, invoice, scope=scope, user=user)
    return Response(
        views.invoice_csv(view),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{invoice.number}.csv"'},
    )


@router.get("/invoices/{invoice_id}", response_model=InvoicePublic)
def get_invoice(session: SessionDep, user: CurrentUser, invoice_id: Id) -> InvoicePublic:
    """One invoice with its numbered lines and vouchers."""
    invoice, scope = views.invoice_get(session, user=user, invoice_id=invoice_id)
    return views.invoice_public(session, invoice, scope=scope, user=user)


@router.post("/invoices/{invoice_id}/payments", response_model=InvoicePublic)
def record_payment(session: SessionDep, user: NetworkAdmin, invoice_id: Id) -> InvoicePublic:
    """Record that a local (non-Stripe) invoice was paid in full by bank transfer."""
    invoice, scope = views.invoice_get(session, user=user, invoice_id=invoice_id)
    invoice_mark_paid(session, invoice=invoice, via="bank", ref=f"by user {user.id}")
    return views.invoice_public(session, invoice, scope=scope, user=user)


def _programme_public(programme: Any) -> ProgrammePublic:
    return ProgrammePublic(
        **programme.model_dump(exclude={"created_at"}), remaining=programme.budget - programme.spent
    )


@router.post("/voucher-programmes", response_model=ProgrammePublic, status_code=201)
def create_programme(
    session: SessionDep, user: NetworkAdmin, data: ProgrammeCreate
) -> ProgrammePublic:
    """Open an innovation voucher programme (network admins)."""
    programme = vouchers.programme_create(
        session,
        data=vouchers.ProgrammeIn(
            **data.model_dump(exclude={"currency"}),
            currency=data.currency or get_settings().currency,
        ),
    )
    return _programme_public(programme)


@router.get("/voucher-programmes", response_model=list[ProgrammePublic])
def list_programmes(session: SessionDep, user: CurrentUser) -> list[ProgrammePublic]:
    """Voucher programmes with what they have spent."""
    return [_programme_public(p) for p in vouchers.programmes_list(session)]


@router.get("/ledger/balances")
def ledger_balances(session: SessionDep, user: NetworkAdmin) -> dict[str, Any]:
    """Every ledger account's balance (debits positive) and the per-currency sum, always 0."""
    return {
        "accounts": [{"code": c, "kind": k, "balance": b} for c, k, b in balances(session)],
        "totals": ledger_totals(session),
    }


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post("/billing/stripe/webhook")
def stripe_webhook(
    session: SessionDep,
    payload: Annotated[bytes, Depends(_raw_body)],
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, Any]:
    """Stripe's events: verified by signature, stored once by id; invoice.paid and
    invoice.payment_failed update the invoice and the ledger."""
    return webhook_receive(session, payload=payload, signature=stripe_signature)


@router.get(
    "/feeds/service-records",
    dependencies=[Depends(only_params("after", "limit"))],
    tags=["feeds"],
)
def service_records(
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="The last id you hold")] = 0,
    limit: Annotated[int, Query(ge=1, le=service_feed.MAX_PAGE)] = 500,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Service records for a provincial sharing platform, after a cursor: person, unit,
    instrument, hours or samples, content, fee. Bearer LABSHARE_SERVICE_FEED_SECRET; each
    page signed in X-Labshare-Signature (HMAC-SHA256 of the body under that secret)."""
    secret = get_settings().service_feed_secret
    if not secret:
        raise NotFound("the service-record feed is off; set LABSHARE_SERVICE_FEED_SECRET")
    sent = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), secret.encode()):
        raise Unauthorized("the feed needs the bearer secret set in LABSHARE_SERVICE_FEED_SECRET")
    items, following = service_feed.records_after(session, after=after, limit=limit)
    body = json.dumps({"items": items, "next": following}, ensure_ascii=False).encode()
    return Response(
        body,
        media_type="application/json",
        headers={"X-Labshare-Signature": service_feed.sign(body, secret)},
    )


@router.post("/bookings/{booking_id}/account", response_model=LinkPublic, tags=["accounts"])
def charge_booking_to_account(
    session: SessionDep,
    user: CurrentUser,
    booking_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    data: ChargeTo,
) -> LinkPublic:
    """Charge your booking to a project account (again to change it): 409 past its budget
    (with the figures) or outside its dates; pending when the PI approves charges."""
    return link_public(booking_charge_to(session, user=user, booking_id=booking_id,
                                         account_id=data.account_id))  # fmt: skip
