"""Project accounts: a PI opens one for a grant or cost centre (budget, validity dates, who
approves what), adds the people who may charge it, and sees where the money stands. An
institution's administrators see every account of the institution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import or_, text
from sqlmodel import Session, col, select

from billing.projects.models import ApprovalRule, ProjectAccount, ProjectMember
from core.audit import audit_record
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.models import Role, User
from core.settings import get_settings
from core.timeutil import utcnow

EDITABLE = ("name", "grant_number", "cost_centre", "po_number", "budget", "valid_from",
            "valid_until", "approval", "approval_threshold", "allow_overspend", "active")  # fmt: skip
ALERT_SHARE = 0.8


class AccountNotFound(NotFound):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} not found")


def _checked(account: ProjectAccount) -> None:
    if not account.name.strip():
        raise Invalid("name: required")
    if account.valid_until < account.valid_from:
        raise Invalid("valid_until: on or after valid_from")
    if account.budget < 0 or account.approval_threshold < 0:
        raise Invalid("budget: 0 or more")


def _set(account: ProjectAccount, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        setattr(account, key, ApprovalRule(value) if key == "approval" else value)


def account_create(session: Session, *, user: User, data: dict[str, Any]) -> ProjectAccount:
    """Open an account; the person opening it is its PI."""
    if user.institution_id is None:
        raise Forbidden("an account belongs to an institution, and you belong to none")
    account = ProjectAccount(institution_id=user.institution_id, owner_id=user.id or 0,
                             currency=get_settings().currency, name="", budget=0,
                             valid_from=utcnow().date(), valid_until=utcnow().date())  # fmt: skip
    _set(account, {k: v for k, v in data.items() if k in EDITABLE and v is not None})
    _checked(account)
    session.add(account)
    session.flush()
    audit_record(session, actor_id=user.id, action="account.create", entity="project_account",
                 entity_id=account.id, after={"name": account.name, "budget": account.budget})  # fmt: skip
    return account


def account_get(
    session: Session, *, user: User, account_id: int, for_update: bool = False
) -> ProjectAccount:
    """The account, to its PI, its members and its institution's administrators (404 to
    anyone else)."""
    account = session.get(ProjectAccount, account_id, with_for_update=for_update or None)
    if account is None or not can_see(session, user, account):
        raise AccountNotFound(account_id)
    return account


def can_see(session: Session, user: User, account: ProjectAccount) -> bool:
    return (
        account.owner_id == user.id
        or user.role == Role.network_admin
        or (user.role == Role.institution_admin and user.institution_id == account.institution_id)
        or is_member(session, account.id or 0, user.id or 0)
    )


def is_member(session: Session, account_id: int, user_id: int) -> bool:
    return session.get(ProjectMember, (account_id, user_id)) is not None


def require_owner(user: User, account: ProjectAccount) -> None:
    if account.owner_id != user.id:
        raise Forbidden("only the account's PI may do this")


def account_update(
    session: Session, *, user: User, account_id: int, data: dict[str, Any]
) -> ProjectAccount:
    account = account_get(session, user=user, account_id=account_id, for_update=True)
    require_owner(user, account)
    before = {k: str(getattr(account, k)) for k in EDITABLE if data.get(k) is not None}
    _set(account, {k: data[k] for k in before})
    _checked(account)
    account.updated_at = utcnow()
    session.add(account)
    session.flush()
    audit_record(session, actor_id=user.id, action="account.update", entity="project_account",
                 entity_id=account.id, before=before,
                 after={k: str(getattr(account, k)) for k in before})  # fmt: skip
    return account


def member_add(session: Session, *, user: User, account_id: int, email: str) -> User:
    """Let a person of the account's institution charge it (the PI adds them)."""
    account = account_get(session, user=user, account_id=account_id, for_update=True)
    require_owner(user, account)
    person = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if person is None or not person.is_active:
        raise Invalid(f"email: nobody active is registered as {email.strip()[:254]}")
    if person.institution_id != account.institution_id:
        raise Invalid("email: members are people of the account's institution")
    if not is_member(session, account_id, person.id or 0):
        session.add(
            ProjectMember(account_id=account_id, user_id=person.id or 0, added_by_id=user.id)
        )
        session.flush()
        audit_record(session, actor_id=user.id, action="account.member_add",
                     entity="project_account", entity_id=account_id, after={"user_id": person.id})  # fmt: skip
    return person


def member_remove(session: Session, *, user: User, account_id: int, user_id: int) -> None:
    account = account_get(session, user=user, account_id=account_id, for_update=True)
    require_owner(user, account)
    member = session.get(ProjectMember, (account_id, user_id))
    if member is None:
        raise NotFound(f"member {user_id} not found")
    session.delete(member)
    session.flush()
    audit_record(session, actor_id=user.id, action="account.member_remove",
                 entity="project_account", entity_id=account_id, before={"user_id": user_id})  # fmt: skip


def members_of(session: Session, account_id: int) -> list[User]:
    return list(session.exec(
        select(User).join(ProjectMember, col(ProjectMember.user_id) == User.id)
        .where(ProjectMember.account_id == account_id).order_by(col(User.name))
    ).all())  # fmt: skip


def accounts_visible(session: Session, *, user: User) -> list[ProjectAccount]:
    """Accounts the person leads or belongs to; an institution administrator: all of the
    institution's."""
    query = select(ProjectAccount).order_by(col(ProjectAccount.name), col(ProjectAccount.id))
    if user.role == Role.institution_admin:
        query = query.where(ProjectAccount.institution_id == user.institution_id)
    elif user.role != Role.network_admin:
        mine = select(ProjectMember.account_id).where(ProjectMember.user_id == user.id)
        query = query.where(
            or_(col(ProjectAccount.owner_id) == user.id, col(ProjectAccount.id).in_(mine))
        )
    return list(session.exec(query.limit(500)).all())


def accounts_chargeable(
    session: Session, *, user: User, on: date | None = None
) -> list[ProjectAccount]:
    """The accounts this person may charge today: theirs or a member's, open, in validity."""
    on = on or utcnow().date()
    mine = select(ProjectMember.account_id).where(ProjectMember.user_id == user.id)
    return list(session.exec(
        select(ProjectAccount).where(
            or_(col(ProjectAccount.owner_id) == user.id, col(ProjectAccount.id).in_(mine)),
            col(ProjectAccount.active).is_(True), col(ProjectAccount.valid_from) <= on,
            col(ProjectAccount.valid_until) >= on,
        ).order_by(col(ProjectAccount.name))
    ).all())  # fmt: skip


def account_usable(
    session: Session,
    *,
    user: User,
    account_id: int,
    on: date | None = None,
    for_update: bool = False,
) -> ProjectAccount:
    """The account, if this person may charge it on this day: 403 for someone else's, 409
    for one closed or outside its dates (with them)."""
    on = on or utcnow().date()
    account = session.get(ProjectAccount, account_id, with_for_update=for_update or None)
    if account is None or not (
        account.owner_id == user.id or is_member(session, account_id, user.id or 0)
    ):
        raise Forbidden(f"account {account_id} is not one you may charge")
    if not account.active:
        raise Conflict(f"account {account.name} is closed")
    if not account.valid_from <= on <= account.valid_until:
        raise Conflict(f"account {account.name} is valid from {account.valid_from} to "
                       f"{account.valid_until}, not on {on}",
                       valid_from=str(account.valid_from), valid_until=str(account.valid_until))  # fmt: skip
    return account


@dataclass(frozen=True)
class Position:
    """Where an account's money stands: charged so far, committed by what is booked or
    accepted and not charged yet, and the budget."""

    budget: int
    spent: int
    committed: int

    @property
    def used(self) -> int:
        return self.spent + self.committed

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    @property
    def share(self) -> float:
        return self.used / self.budget if self.budget else (1.0 if self.used else 0.0)

    @property
    def alert(self) -> bool:
        return self.share >= ALERT_SHARE


# Linked work not charged yet: a booking still ahead or done but not through the charge
# run, a service request the requester accepted (released links are called off).
COMMITTED = """
    SELECT COALESCE(SUM(l.estimate), 0) FROM account_link l
    LEFT JOIN booking b ON l.kind = 'booking' AND b.id = l.source_id
    WHERE l.account_id = :account AND l.status IN ('approved', 'pending')
      AND (l.kind <> 'booking' OR b.status IN ('pending', 'confirmed', 'completed', 'no_show'))
      AND NOT EXISTS (
          SELECT 1 FROM charge c WHERE c.account_id = l.account_id
            AND ((l.kind = 'booking' AND c.booking_id = l.source_id AND c.kind <> 'service')
                 OR (l.kind = 'service_request' AND c.kind = 'service'
                     AND c.source_id = l.source_id)))
"""


def position_of(session: Session, account: ProjectAccount) -> Position:
    spent = session.execute(
        text("SELECT COALESCE(SUM(amount), 0) FROM charge WHERE account_id = :account"),
        {"account": account.id},
    ).scalar_one()
    committed = session.execute(text(COMMITTED), {"account": account.id}).scalar_one()
    return Position(account.budget, int(spent), int(committed))


def needs_approval(account: ProjectAccount, amount: int) -> bool:
    if account.approval == ApprovalRule.always:
        return True
    return account.approval == ApprovalRule.above and amount > account.approval_threshold
