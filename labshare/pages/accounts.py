"""Project accounts as pages: a person's accounts with where each one's money stands and
what waits for their approval (/me/accounts), and one account with its members, charges
and settings (/accounts/{id})."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from billing.projects import accounts, links
from billing.projects.models import ProjectAccount
from core.deps import SessionDep
from core.errors import AppError, Invalid
from core.models import User
from core.routing import UnitOfWorkRoute
from labshare.pages.lab import people
from labshare.pages.web import Csrf, PageUser, back_to, parse_money, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Text = Annotated[str, Form(max_length=200)]


def _list_page(
    request: Request, session: Session, user: User, *, problem: str | None = None,
    status: int = 200,
) -> HTMLResponse:  # fmt: skip
    rows = accounts.accounts_visible(session, user=user)
    waiting = links.pending_for(session, user=user)
    return render(request, "accounts/list.html", {
        "rows": [(a, accounts.position_of(session, a)) for a in rows], "waiting": waiting,
        "who": people(session, {link.chosen_by_id for link, _ in waiting}),
        "today": date.today(), "problem": problem}, user=user, status_code=status)  # fmt: skip


@router.get("/me/accounts", response_class=HTMLResponse)
def my_accounts(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """Your project accounts and what waits for your approval."""
    return _list_page(request, session, user)


def _fields(name: str, grant_number: str, cost_centre: str, po_number: str, budget: str,
            valid_from: str, valid_until: str, approval: str, threshold: str,
            overspend: str) -> dict[str, Any]:  # fmt: skip
    try:
        starts, ends = date.fromisoformat(valid_from), date.fromisoformat(valid_until)
    except ValueError as exc:
        raise Invalid("valid_from: a date such as 2026-12-01") from exc
    if approval not in ("never", "always", "above"):
        raise Invalid("approval: never, always or above")
    return {"name": name.strip(), "grant_number": grant_number.strip(),
            "cost_centre": cost_centre.strip(), "po_number": po_number.strip(),
            "budget": parse_money(budget, field="budget"), "valid_from": starts,
            "valid_until": ends, "approval": approval,
            "approval_threshold": parse_money(threshold or "0", field="approval_threshold"),
            "allow_overspend": overspend == "on"}  # fmt: skip


@router.post("/me/accounts", dependencies=[Csrf])
def open_account(
    request: Request, session: SessionDep, user: PageUser, name: Text, budget: Text,
    valid_from: Text, valid_until: Text, grant_number: Text = "", cost_centre: Text = "",
    po_number: Text = "", approval: Text = "never", approval_threshold: Text = "",
    allow_overspend: Text = "",
) -> Response:  # fmt: skip
    """Open an account; you are its PI."""
    try:
        created = accounts.account_create(session, user=user, data=_fields(
            name, grant_number, cost_centre, po_number, budget, valid_from, valid_until,
            approval, approval_threshold, allow_overspend))  # fmt: skip
    except AppError as exc:
        session.rollback()
        return _list_page(request, session, user, problem=exc.message, status=exc.status_code)
    return back_to(f"/accounts/{created.id}", "saved")


@router.post("/me/accounts/approvals/{link_id}", dependencies=[Csrf])
def decide(
    request: Request, session: SessionDep, user: PageUser, link_id: Id,
    approve: Annotated[str, Form(max_length=5)], reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:  # fmt: skip
    """Approve a charge to your account, or decline it with a reason."""
    try:
        links.link_decide(session, user=user, link_id=link_id, approve=approve == "yes",
                          reason=reason)  # fmt: skip
    except AppError as exc:
        session.rollback()
        return _list_page(request, session, user, problem=exc.message, status=exc.status_code)
    return back_to("/me/accounts", "saved")


def _account_page(
    request: Request, session: Session, user: User, account: ProjectAccount, *,
    problem: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    charges = links.links_of(session, account.id or 0)
    return render(request, "accounts/account.html", {
        "a": account, "p": accounts.position_of(session, account),
        "members": accounts.members_of(session, account.id or 0), "charges": charges,
        "who": people(session, {c.chosen_by_id for c in charges}),
        "mine": account.owner_id == user.id, "problem": problem}, user=user,
        status_code=status)  # fmt: skip


def _refused(
    request: Request, session: Session, user: User, account_id: int, exc: AppError
) -> HTMLResponse:
    """The account's page again, saying why the change was refused (nothing of it kept)."""
    session.rollback()
    account = accounts.account_get(session, user=user, account_id=account_id)
    return _account_page(request, session, user, account, problem=exc.message,
                         status=exc.status_code)  # fmt: skip


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(
    request: Request, session: SessionDep, user: PageUser, account_id: Id
) -> HTMLResponse:
    account = accounts.account_get(session, user=user, account_id=account_id)
    return _account_page(request, session, user, account)


@router.post("/accounts/{account_id}", dependencies=[Csrf])
def account_save(
    request: Request, session: SessionDep, user: PageUser, account_id: Id, name: Text,
    budget: Text, valid_from: Text, valid_until: Text, grant_number: Text = "",
    cost_centre: Text = "", po_number: Text = "", approval: Text = "never",
    approval_threshold: Text = "", allow_overspend: Text = "",
) -> Response:  # fmt: skip
    try:
        accounts.account_update(session, user=user, account_id=account_id, data=_fields(
            name, grant_number, cost_centre, po_number, budget, valid_from, valid_until,
            approval, approval_threshold, allow_overspend))  # fmt: skip
    except AppError as exc:
        return _refused(request, session, user, account_id, exc)
    return back_to(f"/accounts/{account_id}", "saved")


@router.post("/accounts/{account_id}/members", dependencies=[Csrf])
def member_save(
    request: Request, session: SessionDep, user: PageUser, account_id: Id,
    email: Annotated[str, Form(max_length=254)] = "", remove: Annotated[str, Form(max_length=12)] = "",
) -> Response:  # fmt: skip
    """Add a member by email, or take one off (`remove`: their id)."""
    try:
        if remove.isdigit():
            accounts.member_remove(session, user=user, account_id=account_id, user_id=int(remove))
        else:
            accounts.member_add(session, user=user, account_id=account_id, email=email)
    except AppError as exc:
        return _refused(request, session, user, account_id, exc)
    return back_to(f"/accounts/{account_id}", "saved")
