"""Charging work to an account: a booking or a service request is linked to it with its
estimate. The budget is checked first (a 409 with the figures past it, unless the PI
allows overspending), the PI approves where the account asks for it, and the PI is told
once when the account passes 80% of its budget.

The PI's decision on a service request moves the request on; the service desk registers
what to do (`on_decided`), since it builds on accounts and not the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session, col, select

from billing.projects.accounts import account_usable, needs_approval, position_of
from billing.projects.models import AccountLink, LinkKind, LinkStatus, ProjectAccount
from booking.notifications.outbox import notify
from booking.reminders import remind
from core.audit import audit_record
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.models import User
from core.money import format_money
from core.timeutil import utcnow

Decided = Callable[[Session, AccountLink, User], None]
on_decided: dict[LinkKind, Decided] = {}


class OverBudget(Conflict):
    def __init__(self, account: ProjectAccount, *, spent: int, committed: int, amount: int) -> None:
        money = account.currency
        super().__init__(
            f"account {account.name} would pass its budget: {format_money(amount, money)} on "
            f"top of {format_money(spent + committed, money)} spent or committed of "
            f"{format_money(account.budget, money)}",
            budget=account.budget, spent=spent, committed=committed, amount=amount,
        )  # fmt: skip


def link_charge(
    session: Session,
    *,
    user: User,
    account_id: int,
    kind: LinkKind,
    source_id: int,
    amount: int,
    what: str,
    now: datetime | None = None,
) -> AccountLink:
    """Charge this booking or request to the account (again to change its account or
    estimate). Approved at once, or pending the PI's approval where the account asks."""
    now = now or utcnow()
    account = account_usable(session, user=user, account_id=account_id, on=now.date(),
                             for_update=True)  # fmt: skip
    link = session.exec(select(AccountLink).where(
        AccountLink.kind == kind, AccountLink.source_id == source_id)).first()  # fmt: skip
    if link is not None and link.status != LinkStatus.released:
        # A link already counted in the budget is taken out before the new one is weighed.
        link.status = LinkStatus.released
        session.add(link)
        session.flush()
    position = position_of(session, account)
    if position.used + amount > account.budget and not account.allow_overspend:
        raise OverBudget(account, spent=position.spent, committed=position.committed,
                         amount=amount)  # fmt: skip
    pending = needs_approval(account, amount) and user.id != account.owner_id
    status = LinkStatus.pending if pending else LinkStatus.approved
    if link is None:
        link = AccountLink(account_id=account_id, kind=kind, source_id=source_id,
                           chosen_by_id=user.id or 0, estimate=amount, status=status)  # fmt: skip
    else:
        link.account_id, link.estimate, link.status = account_id, amount, status
        link.chosen_by_id, link.decided_by_id, link.decided_at, link.reason = (
            user.id or 0,
            None,
            None,
            "",
        )
    session.add(link)
    session.flush()
    audit_record(session, actor_id=user.id, action="account.charge", entity="project_account",
                 entity_id=account_id, after={"kind": kind.value, "source_id": source_id,
                                              "amount": amount, "status": status.value})  # fmt: skip
    if pending:
        notify(session, user_id=account.owner_id, kind="account_approval_asked",
               subject=f"{user.name or user.email} asks to charge {account.name}",
               body=f"{what}: {format_money(amount, account.currency)}. Approve or decline it "
               "on your accounts page.", data={"account_id": account_id, "link_id": link.id})  # fmt: skip
    _alert_once(session, account, position.used + amount)
    return link


def _alert_once(session: Session, account: ProjectAccount, used: int) -> None:
    """Tell the PI when the account passes 80% (and again past 100%), once each."""
    for share, label in ((0.8, "80%"), (1.0, "its whole budget")):
        if account.budget and used >= account.budget * share:
            remind(session, key=f"account:{account.id}:budget:{label}",
                   user_id=account.owner_id, kind="account_budget_alert",
                   subject=f"{account.name} has used {label}",
                   body=f"{format_money(used, account.currency)} spent or committed of "
                   f"{format_money(account.budget, account.currency)}.",
                   data={"account_id": account.id})  # fmt: skip


def link_of(session: Session, kind: LinkKind, source_id: int) -> AccountLink | None:
    return session.exec(select(AccountLink).where(
        AccountLink.kind == kind, AccountLink.source_id == source_id)).first()  # fmt: skip


def link_release(session: Session, kind: LinkKind, source_id: int) -> None:
    """The work was called off: its estimate no longer counts against the budget."""
    link = link_of(session, kind, source_id)
    if link is not None and link.status in (LinkStatus.approved, LinkStatus.pending):
        link.status = LinkStatus.released
        session.add(link)
        session.flush()


def link_decide(
    session: Session, *, user: User, link_id: int, approve: bool, reason: str = ""
) -> AccountLink:
    """The PI approves a pending charge to the account, or declines it with a reason (the
    work is then billed to the institution, or, for a service request, goes back to its
    requester to accept without the account)."""
    link = session.get(AccountLink, link_id, with_for_update=True)
    account = session.get(ProjectAccount, link.account_id) if link else None
    if link is None or account is None or account.owner_id != user.id:
        if account is not None and link is not None and link.chosen_by_id == user.id:
            raise Forbidden("the account's PI decides")
        raise NotFound(f"charge {link_id} not found")
    if link.status != LinkStatus.pending:
        raise Conflict(f"this charge is {link.status.value}", status=link.status.value)
    if not approve and not reason.strip():
        raise Invalid("reason: say why, the member reads it")
    link.status = LinkStatus.approved if approve else LinkStatus.declined
    link.decided_by_id, link.decided_at, link.reason = user.id, utcnow(), reason.strip()[:1000]
    session.add(link)
    session.flush()
    audit_record(session, actor_id=user.id, action="account.approve" if approve else "account.decline",
                 entity="project_account", entity_id=account.id,
                 after={"link_id": link.id, "reason": link.reason})  # fmt: skip
    notify(session, user_id=link.chosen_by_id,
           kind="account_approved" if approve else "account_declined",
           subject=f"{account.name}: your charge was {'approved' if approve else 'declined'}",
           body=link.reason, data={"account_id": account.id, "link_id": link.id})  # fmt: skip
    handler = on_decided.get(link.kind)
    if handler is not None:
        handler(session, link, user)
    return link


def pending_for(session: Session, *, user: User) -> list[tuple[AccountLink, ProjectAccount]]:
    """What waits for this PI's approval, oldest first."""
    return list(session.exec(
        select(AccountLink, ProjectAccount)
        .join(ProjectAccount, col(ProjectAccount.id) == AccountLink.account_id)
        .where(ProjectAccount.owner_id == user.id, AccountLink.status == LinkStatus.pending)
        .order_by(col(AccountLink.id))
    ).all())  # fmt: skip


def links_of(session: Session, account_id: int, limit: int = 200) -> list[AccountLink]:
    return list(session.exec(select(AccountLink).where(AccountLink.account_id == account_id)
                             .order_by(col(AccountLink.id).desc()).limit(limit)).all())  # fmt: skip
