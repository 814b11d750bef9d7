"""Innovation vouchers as pages: a small company applies and follows its vouchers; the
bureau (network administrators) reviews applications and providers' claims and publishes
notices; providers claim the voucher share of their services; anyone reads the notices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from billing import voucher_applications as applications
from billing import voucher_claims as claims
from billing.models import VoucherProgramme, VoucherStatus
from billing.vouchers import programmes_list
from core.deps import OptionalUser, SessionDep
from core.errors import AppError
from core.models import Role, User
from core.periods import last_month, months_back
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments.models import Institution
from labshare.pages.web import (
    Csrf,
    PageAdmin,
    PageUser,
    back_to,
    error_page,
    parse_money,
    render,
)

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
DECIDED_SHOWN = 30
CLAIMS_WITH_LINES = 10  # the newest claims show their lines
UNCLAIMED_MONTHS = 3
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


def _decided(
    request: Request,
    session: Session,
    user: User,
    voucher_id: int,
    decide: Callable[[], object],
    *,
    msg: str,
) -> Response:
    """Decide and go back to the queue; a refusal shows there beside the application."""
    try:
        decide()
    except AppError as exc:
        session.rollback()
        return _queue(request, session, user, problem=(voucher_id, exc.status_code, exc.message))
    return back_to("/admin/vouchers", msg)


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
    return _decided(
        request, session, user, voucher_id,
        lambda: applications.application_approve(
            session, actor=user, voucher_id=voucher_id,
            amount=parse_money(amount, field="amount"), note=note,
        ),
        msg="voucher-approved",
    )  # fmt: skip


@router.post("/admin/vouchers/{voucher_id}/reject", dependencies=[Csrf])
def reject(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    voucher_id: Id,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    return _decided(
        request, session, user, voucher_id,
        lambda: applications.application_reject(
            session, actor=user, voucher_id=voucher_id, reason=reason
        ),
        msg="voucher-rejected",
    )  # fmt: skip


@router.get("/vouchers/notices", response_class=HTMLResponse)
def public_notices(request: Request, session: SessionDep, user: OptionalUser) -> HTMLResponse:
    """The published lists of approved voucher reimbursements (公示), open to anyone."""
    return render(
        request,
        "billing/notices.html",
        {"notices": claims.notices_public(session), "today": utcnow().date()},
        user=user,
    )


@router.get("/admin/claims", response_class=HTMLResponse)
@router.get("/lab/claims", response_class=HTMLResponse)
def provider_claims(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """A provider's voucher claims: what its services' voucher uses are worth per month and
    programme, what was claimed, and each line's decision."""
    return _claims_page(request, session, user)


def _claims_page(
    request: Request,
    session: Session,
    user: User,
    *,
    problem: str | None = None,
    status_code: int = 422,
) -> HTMLResponse:
    is_provider = user.role in claims.PROVIDER_ROLES and user.institution_id is not None
    mine = (
        claims.claims_list(session, user=user)
        if is_provider or user.role == Role.network_admin
        else []
    )
    lines = {c.id: claims.claim_lines(session, c.id or 0) for c in mine[:CLAIMS_WITH_LINES]}
    periods = list(reversed(months_back(last_month(), 12)))
    # What the provider could claim: its services' voucher uses not yet claimed, per month.
    programmes = _programmes(session)
    unclaimed = []
    if is_provider:
        for pid, programme in programmes.items():
            for period in periods[:UNCLAIMED_MONTHS]:
                every = claims.uses_of(
                    session, provider_id=user.institution_id or 0, programme_id=pid,
                    period=period, paid_only=False,
                )  # fmt: skip
                if not every:
                    continue
                paid = claims.on_paid_invoices(session, every)
                unclaimed.append((programme, period, len(every), sum(u.amount for u in every),
                                  len(paid), sum(u.amount for u in paid)))  # fmt: skip
    return render(
        request,
        "billing/claims.html",
        {
            "is_provider": is_provider,
            "is_admin": user.role == Role.network_admin,
            "claims": mine,
            "lines": lines,
            "programmes": programmes,
            "providers": {
                i.id: i.name
                for i in (session.get(Institution, c.provider_institution_id) for c in mine)
                if i is not None
            },
            "periods": periods,
            "unclaimed": unclaimed,
            "problem": problem,
        },
        user=user,
        status_code=status_code if problem else 200,
    )


def _claims_action(
    request: Request,
    session: Session,
    user: User,
    act: Callable[[], object],
    *,
    then: str,
    msg: str,
) -> Response:
    """Do it and go on to `then`; a refusal shows the claims page with the reason."""
    try:
        act()
    except AppError as exc:
        session.rollback()
        return _claims_page(
            request, session, user, problem=exc.message, status_code=exc.status_code
        )
    return back_to(then, msg)


@router.post("/lab/claims", dependencies=[Csrf])
def submit_claim(
    request: Request,
    session: SessionDep,
    user: PageUser,
    programme_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    period: Annotated[str, Form(max_length=7)],
) -> Response:
    return _claims_action(
        request, session, user,
        lambda: claims.claim_submit(session, user=user, programme_id=programme_id, period=period),
        then="/lab/claims", msg="claim-submitted",
    )  # fmt: skip


@router.post("/admin/claims/{claim_id}/decide", dependencies=[Csrf])
def decide_claim(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    claim_id: Id,
    approve: Annotated[str, Form(max_length=5)],
    line_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Approve or reject one line, or all undecided lines of a claim."""
    return _claims_action(
        request, session, user,
        lambda: claims.line_decide(
            session, actor=user, claim_id=claim_id,
            line_ids=[line_id] if line_id else None, approve=approve == "yes", reason=reason,
        ),
        then="/admin/claims", msg="claim-decided",
    )  # fmt: skip


@router.post("/admin/notices", dependencies=[Csrf])
def publish_notice(
    request: Request,
    session: SessionDep,
    user: PageAdmin,
    programme_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    days: Annotated[int, Form(ge=1, le=90)] = claims.NOTICE_DAYS,
) -> Response:
    return _claims_action(
        request, session, user,
        lambda: claims.notice_publish(session, actor=user, programme_id=programme_id, days=days),
        then="/vouchers/notices", msg="notice-published",
    )  # fmt: skip


@router.get("/lab/claims/{claim_id}/lines/{line_id}", response_class=HTMLResponse)
def claim_line_page(
    request: Request, session: SessionDep, user: PageUser, claim_id: Id, line_id: Id
) -> HTMLResponse:
    """One claimed use with its evidence, and whether it still matches its digest."""
    try:
        found = claims.line_evidence(session, user=user, claim_id=claim_id, line_id=line_id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return render(
        request, "billing/claim_line.html", {"claim_id": claim_id, "line": found}, user=user
    )
