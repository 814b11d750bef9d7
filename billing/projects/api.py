"""Project accounts over HTTP: open and change one, its members, where its money stands,
the PI's approvals, and charging a booking to one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlmodel import Session

from billing.projects import accounts, links
from billing.projects.models import AccountLink, ProjectAccount
from billing.projects.schemas import (
    AccountChange,
    AccountIn,
    AccountPublic,
    Decision,
    LinkPublic,
    MemberIn,
    Position,
)
from core.deps import CurrentUser, SessionDep
from core.routing import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute, tags=["accounts"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def account_public(
    session: Session, account: ProjectAccount, *, full: bool = False
) -> AccountPublic:
    data = AccountPublic.model_validate(account, from_attributes=True)
    data.approval = account.approval.value
    if full:
        p = accounts.position_of(session, account)
        data.position = Position(budget=p.budget, spent=p.spent, committed=p.committed,
                                 remaining=p.remaining, used_share=round(p.share, 4), alert=p.alert)  # fmt: skip
        data.members = [m.id or 0 for m in accounts.members_of(session, account.id or 0)]
    return data


def link_public(link: AccountLink) -> LinkPublic:
    data = LinkPublic.model_validate(link, from_attributes=True)
    data.kind, data.status = link.kind.value, link.status.value
    return data


@router.get("/accounts", response_model=list[AccountPublic])
def list_accounts(session: SessionDep, user: CurrentUser) -> list[AccountPublic]:
    """Accounts you lead or belong to (an institution administrator: all of the
    institution's), with where each one's money stands."""
    return [
        account_public(session, a, full=True) for a in accounts.accounts_visible(session, user=user)
    ]


@router.post("/accounts", response_model=AccountPublic, status_code=201)
def open_account(session: SessionDep, user: CurrentUser, data: AccountIn) -> AccountPublic:
    """Open a project account; you are its PI."""
    created = accounts.account_create(session, user=user, data=data.model_dump(exclude_none=True))
    return account_public(session, created, full=True)


@router.get("/accounts/approvals", response_model=list[LinkPublic])
def my_approvals(session: SessionDep, user: CurrentUser) -> list[LinkPublic]:
    """Charges to your accounts waiting for your approval, oldest first."""
    return [link_public(link) for link, _ in links.pending_for(session, user=user)]


@router.post("/accounts/approvals/{link_id}", response_model=LinkPublic)
def decide(session: SessionDep, user: CurrentUser, link_id: Id, data: Decision) -> LinkPublic:
    """Approve a charge to your account, or decline it with a reason."""
    return link_public(links.link_decide(session, user=user, link_id=link_id,
                                         approve=data.approve, reason=data.reason))  # fmt: skip


@router.get("/accounts/{account_id}", response_model=AccountPublic)
def get_account(session: SessionDep, user: CurrentUser, account_id: Id) -> AccountPublic:
    return account_public(
        session, accounts.account_get(session, user=user, account_id=account_id), full=True
    )


@router.patch("/accounts/{account_id}", response_model=AccountPublic)
def change_account(
    session: SessionDep, user: CurrentUser, account_id: Id, data: AccountChange
) -> AccountPublic:
    changed = accounts.account_update(session, user=user, account_id=account_id,
                                      data=data.model_dump(exclude_none=True))  # fmt: skip
    return account_public(session, changed, full=True)


@router.get("/accounts/{account_id}/charges", response_model=list[LinkPublic])
def account_charges(session: SessionDep, user: CurrentUser, account_id: Id) -> list[LinkPublic]:
    """What was charged to the account, newest first."""
    accounts.account_get(session, user=user, account_id=account_id)
    return [link_public(link) for link in links.links_of(session, account_id)]


@router.post("/accounts/{account_id}/members", response_model=AccountPublic, status_code=201)
def add_member(
    session: SessionDep, user: CurrentUser, account_id: Id, data: MemberIn
) -> AccountPublic:
    accounts.member_add(session, user=user, account_id=account_id, email=data.email)
    return get_account(session, user, account_id)


@router.delete("/accounts/{account_id}/members/{user_id}", status_code=204)
def remove_member(session: SessionDep, user: CurrentUser, account_id: Id, user_id: Id) -> None:
    accounts.member_remove(session, user=user, account_id=account_id, user_id=user_id)
