"""Innovation vouchers as pages: a small company applies and follows its vouchers; the
bureau (network administrators) reviews the queue with each company's history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from billing import voucher_applications as applications
from billing.models import VoucherProgramme, VoucherStatus
from billing.vouchers import programmes_list
from core.deps import SessionDep
from core.errors import AppError
from core.models import User
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments.models import Institution
from labshare.pages.web import Csrf, PageAdmin, PageUser, back_to, parse_money, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
DECIDED_SHOWN = 30
USES_SHOWN = 50


def _programmes(session: Session) -> dict[int, VoucherProgramme]:
    return {p.id or 0: p for p in programmes_list(session)}


def _mine(
    request: Request,
    session: Session,
    user: User,
    *,
    problem: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    company = session.get(Institution, user.institution_id) if user.institution_id else None
    eligible = company is not None and applications.is_small_company(company)
    open_now = applications.open_programmes(session)
    year = utcnow().year
    standings = {
        p.id: applications.standing(session, p, company.id or 0, year)
        for p in open_now
        if company is not None
    }
    return render(
        request,
        "billing/vouchers.html",
        {
            "company": company,
            "eligible": eligible,
            "open_programmes": open_now,
            "standings": standings,
            "vouchers": applications.vouchers_list(session, user=user),
            "uses": applications.voucher_uses(session, user=user, limit=USES_SHOWN),
            "programmes": _programmes(session),
            "problem": problem,
            "form": form or {"credit_code": company.credit_code if company else ""},
        },
        user=user,
        status_code=422 if problem else 200,
    )


@router.get("/me/vouchers", response_class=HTMLResponse)
def my_vouchers(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """A company's vouchers, pending, approved (amount, balance, expiry) or rejected (the
    reason), and the application form."""
    return _mine(request, session, user)


@router.post("/me/vouchers", dependencies=[Csrf])
def apply(
    request: Request,
    session: SessionDep,
    user: PageUser,
    programme_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    amount: Annotated[str, Form(max_length=20)],
    needs: Annotated[str, Form(max_length=2000)],
    credit_code: Annotated[str, Form(max_length=40)],
) -> Response:
    """Apply; a refusal comes back beside the form with what was typed kept."""
    form = {"programme_id": str(programme_id), "amount": amount, "needs": needs,
            "credit_code": credit_code}  # fmt: skip
    try:
        applications.application_submit(
            session,
            user=user,
            programme_id=programme_id,
            amount=parse_money(amount, field="amount"),
            needs=needs,
            credit_code=credit_code,
        )
    except AppError as exc:
        session.rollback()
        return _mine(request, session, user, problem=exc.message, form=form)
    return back_to("/me/vouchers", "voucher-applied")


def _queue(request: Request, session: Session, user: User, *, problem: Any = None) -> HTMLResponse:
    pending = applications.vouchers_list(session, user=user, status=VoucherStatus.pending)
    decided = [
        v
        for v in applications.vouchers_list(session, user=user, limit=DECIDED_SHOWN * 2)
        if v.status != VoucherStatus.pending
    ][:DECIDED_SHOWN]
    companies = {v.institution_id for v in pending + decided}
    names = {i.id: i for i in (session.get(Institution, c) for c in companies) if i is not None}
    programmes = _programmes(session)
    return render(
        request,
        "admin/vouchers.html",
        {
            "pending": pending,
            "decided": decided,
            "companies": names,
            "history": applications.company_history(session, sorted(companies)),
            "standings": {
                v.id: applications.standing(
                    session, programmes[v.programme_id], v.institution_id, v.year
                )
                for v in pending
            },
            "programmes": programmes,
            "problem": problem,
        },
        user=user,
        status_code=problem[1] if problem else 200,
    )


@router.get("/admin/vouchers", response_class=HTMLResponse)
def review_queue(request: Request, session: SessionDep, user: PageAdmin) -> HTMLResponse:
    """Applications waiting for review, oldest first, each with its company's history; the
    latest decisions under them."""
    return _queue(request, session, user)


@router.post("/admin/vouchers/{voucher_id}/approve", dependencies=[Csrf])
def approve(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    voucher_id: Id,
    amount: Annotated[str, Form(max_length=20)],
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    try:
        applications.application_approve(
            session,
            actor=user,
            voucher_id=voucher_id,
            amount=parse_money(amount, field="amount"),
            note=note,
        )
    except AppError as exc:
        session.rollback()
        return _queue(request, session, user, problem=(voucher_id, exc.status_code, exc.message))
    return back_to("/admin/vouchers", "voucher-approved")


@router.post("/admin/vouchers/{voucher_id}/reject", dependencies=[Csrf])
def reject(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    voucher_id: Id,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    try:
        applications.application_reject(session, actor=user, voucher_id=voucher_id, reason=reason)
    except AppError as exc:
        session.rollback()
        return _queue(request, session, user, problem=(voucher_id, exc.status_code, exc.message))
    return back_to("/admin/vouchers", "voucher-rejected")
