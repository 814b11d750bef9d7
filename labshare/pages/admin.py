"""The network administrator's pages: dashboard with charts, settlements, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from admin import policies
from admin import service as admin_service
from admin import settlement as settle
from admin.management import audit_list
from billing.vouchers import programmes_use
from core.deps import SessionDep
from core.errors import AppError, Invalid
from core.models import User
from core.pagination import decode_cursor, encode_cursor
from core.periods import last_month, months_back
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from labshare.pages.lab import people
from labshare.pages.web import Csrf, PageAdmin, back_to, error_page, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")]
TREND_MONTHS = 6


def _subsidies(session: Session, period: str) -> dict[str, Any] | None:
    """The month's settlement (finalized, else the newest preview) for the subsidy chart."""
    rows, _ = settle.settlement_list(session, period=period, after=None, limit=20)
    if not rows:
        return None
    chosen = next((r for r in rows if r.status == "finalized"), rows[0])
    view = admin_service.settlement_public(session, chosen)
    lines = sorted(
        view.institutions, key=lambda x: x.reward + x.voucher_reimbursement, reverse=True
    )
    top = lines[:15]
    return {
        "id": view.id,
        "status": view.status,
        "labels": [x.name for x in top],
        "reward": [x.reward for x in top],
        "vouchers": [x.voucher_reimbursement for x in top],
        "others_reward": sum(x.reward for x in lines[15:]),
        "others_vouchers": sum(x.voucher_reimbursement for x in lines[15:]),
        "currency": view.currency,
    }


@router.get("/admin", response_class=HTMLResponse)
def dashboard(
    request: Request, session: SessionDep, user: PageAdmin, period: Month = None
) -> HTMLResponse:
    """The network at a glance; the KPI charts load from the admin API."""
    period = period or last_month()
    return render(
        request,
        "admin/dashboard.html",
        {
            "period": period,
            "trend": months_back(period, TREND_MONTHS),
            "programmes": programmes_use(session),
            "subsidies": _subsidies(session, period),
        },
        user=user,
    )


@router.get("/admin/settlements", response_class=HTMLResponse)
def settlements(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """Settlements, newest first, and the form to preview a month's."""
    rows, last = settle.settlement_list(session, period=None, after=decode_cursor(next), limit=25)
    return render(
        request,
        "admin/settlements.html",
        {
            "rows": rows,
            "next": encode_cursor(last) if last is not None else None,
            "policies": policies.policy_list(session),
            "default_period": last_month(),
        },
        user=user,
    )


@router.post("/admin/settlements", dependencies=[Csrf])
def run_settlement(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    period: Annotated[str, Form(pattern=r"^\d{4}-\d{2}$")],
    policy_id: Annotated[str, Form(max_length=12)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Compute a preview settlement for a month."""
    try:
        row = settle.settlement_preview(
            session,
            period=period,
            policy_id=int(policy_id) if policy_id.strip() else None,
            actor_id=user.id,
            note=note,
        )
    except ValueError:
        return error_page(request, Invalid("policy: not a policy id"), user=user)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/admin/settlements/{row.id}")


@router.get("/admin/settlements/{settlement_id}", response_class=HTMLResponse)
def settlement_page(
    request: Request, session: SessionDep, user: PageAdmin, settlement_id: Id
) -> HTMLResponse:
    """One settlement: per institution, external hours and revenue, vouchers, reward."""
    view = admin_service.settlement_public(session, settle.settlement_get(session, settlement_id))
    return render(
        request,
        "admin/settlement.html",
        {"s": view, "can_finalize": view.status == "preview"},
        user=user,
    )


@router.post("/admin/settlements/{settlement_id}/recompute", dependencies=[Csrf])
def recompute(
    request: Request, session: SessionDep, user: PageAdmin, settlement_id: Id
) -> Response:
    """Recompute a preview on the newest figures."""
    try:
        settle.settlement_update(
            session, settlement_id=settlement_id, policy_id=None, note=None, actor_id=user.id
        )
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/admin/settlements/{settlement_id}", "saved")


@router.post("/admin/settlements/{settlement_id}/finalize", dependencies=[Csrf])
def finalize(request: Request, session: SessionDep, user: PageAdmin, settlement_id: Id) -> Response:
    """Make the settlement immutable and post it to the ledger."""
    try:
        settle.settlement_finalize(session, settlement_id=settlement_id, actor_id=user.id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/admin/settlements/{settlement_id}", "finalized")


def _day(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=get_settings().zone)
    except ValueError:
        raise Invalid(f"{field}: {value!r} is not a date")


# The audit log's actions as people say them (the code stays beside, for filtering).
ACTION_WORDS: dict[str, str] = {
    "booking.approve": "Approved a booking",
    "booking.reject": "Rejected a booking",
    "blackout.create": "Blocked an instrument",
    "blackout.lift": "Lifted a blackout",
    "instrument.update": "Changed an instrument's rules or details",
    "opening_hours.set": "Changed opening hours",
    "rate_card.create": "Set a price",
    "charging_policy.set": "Changed the charging policy",
    "qualification.grant": "Granted a qualification",
    "qualification.revoke": "Revoked a qualification",
    "badge.register": "Registered a badge",
    "badge.revoke": "Revoked a badge",
    "usage.confirm": "Confirmed held usage",
    "usage.dismiss": "Dismissed held usage",
    "settlement.preview": "Previewed a settlement",
    "settlement.update": "Previewed a settlement again",
    "settlement.delete": "Deleted a settlement preview",
    "settlement.finalize": "Finalized a settlement",
    "policy.create": "Created a subsidy policy",
    "institution.create": "Added an institution",
    "institution.update": "Changed an institution",
    "lab.create": "Added a lab",
    "lab.update": "Changed a lab",
    "user.create": "Added an account",
    "user.update": "Changed an account",
    "evaluation.set": "Recorded an evaluation",
    "connected_account.set": "Set a payout account",
    "payout.recorded": "Recorded a payout for bank transfer",
    "payout.paid": "Paid out through Stripe",
    "payout.failed": "A payout failed",
}


@router.get("/admin/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    entity: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The audit log, newest first: who did what to which thing, before and after."""
    form = {
        "entity": entity or "",
        "action": action or "",
        "since": since or "",
        "until": until or "",
    }
    rows: list[Any] = []
    last = None
    error = None
    try:
        rows, last = audit_list(
            session,
            actor=user,
            actor_id=None,
            entity=entity or None,
            entity_id=None,
            action=action or None,
            since=_day(since, "since"),
            until=_day(until, "until"),
            after=decode_cursor(next),
            limit=50,
        )
    except AppError as exc:
        error = exc.message
    who: dict[int, User] = people(session, {r.actor_id for r in rows if r.actor_id})
    return render(
        request,
        "admin/audit.html",
        {
            "action_words": ACTION_WORDS,
            "rows": rows,
            "who": who,
            "form": form,
            "error": error,
            "next": encode_cursor(last) if last is not None else None,
        },
        user=user,
        status_code=422 if error else 200,
    )
