"""Stored subsidy policies: create (never edit), list, and pick the one a settlement uses."""

from __future__ import annotations

from sqlmodel import Session, col, select

from admin.errors import NoPolicy, PolicyNotFound
from admin.models import SubsidyPolicy
from admin.subsidy import PolicyDocument
from core.audit import audit_record


def policy_create(
    session: Session, *, document: PolicyDocument, actor_id: int | None
) -> SubsidyPolicy:
    """Store a validated policy; audited."""
    row = SubsidyPolicy(name=document.name, document=document.canonical(), created_by_id=actor_id)
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor_id,
        action="policy.create",
        entity="subsidy_policy",
        entity_id=row.id,
        after=row.document,
    )
    return row


def policy_find_or_create(
    session: Session, *, document: PolicyDocument, actor_id: int | None
) -> SubsidyPolicy:
    """The newest stored policy with exactly this content, or a new one (a file run twice)."""
    wanted = document.canonical()
    for row in session.exec(
        select(SubsidyPolicy)
        .where(SubsidyPolicy.name == document.name)
        .order_by(col(SubsidyPolicy.id).desc())
    ):
        if row.document == wanted:
            return row
    return policy_create(session, document=document, actor_id=actor_id)


def policy_document(row: SubsidyPolicy) -> PolicyDocument:
    return PolicyDocument.model_validate(row.document)


def policy_list(session: Session) -> list[SubsidyPolicy]:
    """Every policy, newest first."""
    return list(session.exec(select(SubsidyPolicy).order_by(col(SubsidyPolicy.id).desc())))


def policy_resolve(session: Session, policy_id: int | None) -> SubsidyPolicy:
    """The named policy, or the newest one when none is named."""
    if policy_id is not None:
        row = session.get(SubsidyPolicy, policy_id)
        if row is None:
            raise PolicyNotFound(policy_id)
        return row
    row = session.exec(select(SubsidyPolicy).order_by(col(SubsidyPolicy.id).desc())).first()
    if row is None:
        raise NoPolicy()
    return row
