"""The subsidy policy as a form: administrators write the sharing-reward rules a
settlement computes with. Policies are kept as written (a settlement names the one it
used), so changing one stores a new version, prefilled from the one it changes."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from admin import policies
from admin.subsidy import PolicyDocument, policy_parse
from core.deps import SessionDep
from core.errors import AppError, Invalid
from core.models import User
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from labshare.pages.web import (
    Csrf,
    PageAdmin,
    back_to,
    money_input,
    parse_money,
    read_decimal,
    render,
)

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
WEIGHTS = ("external_hours", "external_revenue", "outside_users", "utilisation")
SHOWN = 20


def _form_of(document: PolicyDocument | None) -> dict[str, str]:
    """What the form shows: a stored policy's terms, or a starting point."""
    currency = document.currency if document else get_settings().currency
    if document is None:
        return {"name": "", "budget": "", "point_value": money_input(100, currency),
                "external_hours": "10", "external_revenue": "0", "outside_users": "0",
                "utilisation": "0", "min_asset_value": money_input(500_000_00, currency),
                "min_external_hours": "1", "exclude_failed_evaluation": "on",
                "institution_cap": "", "voucher_reimbursement_percent": "100"}  # fmt: skip
    return {
        "name": document.name,
        "budget": money_input(document.budget, currency),
        "point_value": money_input(document.point_value, currency),
        **{w: str(getattr(document.weights, w)) for w in WEIGHTS},
        "min_asset_value": money_input(document.eligibility.min_asset_value, currency),
        "min_external_hours": str(document.eligibility.min_external_hours),
        "exclude_failed_evaluation": "on" if document.eligibility.exclude_failed_evaluation else "",
        "institution_cap": (
            money_input(document.institution_cap, currency) if document.institution_cap else ""
        ),
        "voucher_reimbursement_percent": str(document.voucher_reimbursement_percent),
    }


def _page(
    request: Request, session: Session, user: User, form: dict[str, str], problem: str | None
) -> HTMLResponse:
    rows = policies.policy_list(session)[:SHOWN]
    return render(
        request,
        "admin/policies.html",
        {
            "form": form,
            "problem": problem,
            "rows": rows,
            "documents": {r.id: policies.policy_document(r) for r in rows},
            "currency": get_settings().currency,
        },
        user=user,
        status_code=422 if problem else 200,
    )


@router.get("/admin/policies", response_class=HTMLResponse)
def policy_form(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=2**31 - 1)] = None,
) -> HTMLResponse:
    """The stored policies, newest first, and the form: a new policy, or a new version of
    one (`?from=ID`, the newest by default)."""
    source = None
    if from_ is not None:
        try:
            source = policies.policy_resolve(session, from_)
        except AppError:
            source = None
    else:
        stored = policies.policy_list(session)
        source = stored[0] if stored else None
    document = policies.policy_document(source) if source else None
    return _page(request, session, user, _form_of(document), None)


def _number(value: str, field: str) -> Decimal:
    number = read_decimal(value.strip() or "0")
    if number is None:
        raise Invalid(f"{field}: {value!r} is not a number")
    return number


@router.post("/admin/policies", dependencies=[Csrf])
def store_policy(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    name: Annotated[str, Form(max_length=200)],
    budget: Annotated[str, Form(max_length=30)],
    point_value: Annotated[str, Form(max_length=30)],
    external_hours: Annotated[str, Form(max_length=30)] = "0",
    external_revenue: Annotated[str, Form(max_length=30)] = "0",
    outside_users: Annotated[str, Form(max_length=30)] = "0",
    utilisation: Annotated[str, Form(max_length=30)] = "0",
    min_asset_value: Annotated[str, Form(max_length=30)] = "0",
    min_external_hours: Annotated[str, Form(max_length=30)] = "0",
    exclude_failed_evaluation: Annotated[str, Form(max_length=5)] = "",
    institution_cap: Annotated[str, Form(max_length=30)] = "",
    voucher_reimbursement_percent: Annotated[str, Form(max_length=5)] = "100",
) -> Response:
    """Store a policy from the form (a new version when it changes a stored one); a
    refusal comes back beside the form with what was typed."""
    typed = {k: v for k, v in locals().items() if isinstance(v, str)}
    try:
        data: dict[str, Any] = {
            "name": name.strip(),
            "budget": parse_money(budget, field="budget"),
            "point_value": parse_money(point_value, field="point_value"),
            "weights": {w: _number(typed[w], f"weights.{w}") for w in WEIGHTS},
            "eligibility": {
                "min_asset_value": parse_money(min_asset_value, field="min_asset_value"),
                "min_external_hours": _number(min_external_hours, "min_external_hours"),
                "exclude_failed_evaluation": exclude_failed_evaluation == "on",
            },
            "voucher_reimbursement_percent": int(_number(voucher_reimbursement_percent,
                                                         "voucher_reimbursement_percent")),
        }  # fmt: skip
        if institution_cap.strip():
            data["institution_cap"] = parse_money(institution_cap, field="institution_cap")
        policies.policy_create(session, document=policy_parse(data), actor_id=user.id)
    except AppError as exc:
        session.rollback()
        return _page(request, session, user, typed, exc.message)
    return back_to("/admin/settlements", "policy-saved")
