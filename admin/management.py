"""Managing the network: institutions (small-company flag included), labs, users and roles,
instrument evaluations, and reading the audit log. Every change is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from admin.models import EvaluationResult, InstrumentEvaluation
from admin.schemas import (
    InstitutionIn,
    InstitutionPatch,
    LabIn,
    LabPatch,
    UserIn,
    UserPatch,
)
from booking.qualifications import qualifications_claim
from core.audit import AuditEntry, audit_record
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.models import Role, User
from core.service import user_create
from instruments.models import Institution, Instrument, Lab


def _snapshot(row: Any, fields: list[str]) -> dict[str, Any]:
    out = {}
    for name in fields:
        value = getattr(row, name)
        out[name] = value.value if hasattr(value, "value") else value
    return out


def _patch_audited(
    session: Session, row: Any, data: BaseModel, fields: list[str], *, entity: str, actor: User
) -> None:
    """Apply the fields a PATCH set (nulls mean "leave it") and audit before and after."""
    before = _snapshot(row, fields)
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(row, name, value)
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action=f"{entity}.update",
        entity=entity,
        entity_id=row.id,
        before=before,
        after=_snapshot(row, fields),
    )


def _unique_code(session: Session, table: type[Institution] | type[Lab], code: str) -> None:
    if session.exec(select(table.id).where(table.code == code)).first() is not None:
        raise Conflict(f"the code {code!r} is taken")


INSTITUTION_FIELDS = ["code", "name", "kind", "is_small_company"]
LAB_FIELDS = ["code", "name", "institution_id", "is_key_lab", "no_show_grace_minutes"]
USER_FIELDS = ["email", "name", "role", "institution_id", "lab_id", "is_active"]


def institution_get(session: Session, institution_id: int) -> Institution:
    row = session.get(Institution, institution_id)
    if row is None:
        raise NotFound(f"no institution {institution_id}")
    return row


def institution_create(session: Session, *, data: InstitutionIn, actor: User) -> Institution:
    """Add an institution (network admins)."""
    _unique_code(session, Institution, data.code)
    row = Institution(**data.model_dump())
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="institution.create",
        entity="institution",
        entity_id=row.id,
        after=_snapshot(row, INSTITUTION_FIELDS),
    )
    return row


def institution_update(
    session: Session, *, institution_id: int, data: InstitutionPatch, actor: User
) -> Institution:
    """Rename an institution, change its kind or its small-company flag (network admins)."""
    row = institution_get(session, institution_id)
    _patch_audited(session, row, data, INSTITUTION_FIELDS, entity="institution", actor=actor)
    return row


def institutions_list(session: Session) -> list[Institution]:
    return list(session.exec(select(Institution).order_by(col(Institution.code))))


def lab_create(session: Session, *, data: LabIn, actor: User) -> Lab:
    """Add a lab to an institution (network admins)."""
    _unique_code(session, Lab, data.code)
    institution = session.exec(
        select(Institution).where(Institution.code == data.institution)
    ).first()
    if institution is None:
        raise Invalid(f"no institution with the code {data.institution!r}")
    assert institution.id is not None
    row = Lab(**data.model_dump(exclude={"institution"}), institution_id=institution.id)
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="lab.create",
        entity="lab",
        entity_id=row.id,
        after=_snapshot(row, LAB_FIELDS),
    )
    return row


def lab_update(session: Session, *, lab_id: int, data: LabPatch, actor: User) -> Lab:
    """Rename a lab or change its flags (network admins)."""
    row = session.get(Lab, lab_id)
    if row is None:
        raise NotFound(f"no lab {lab_id}")
    _patch_audited(session, row, data, LAB_FIELDS, entity="lab", actor=actor)
    return row


def labs_list(session: Session, *, institution_id: int | None) -> list[Lab]:
    query = select(Lab).order_by(col(Lab.code))
    if institution_id is not None:
        query = query.where(Lab.institution_id == institution_id)
    return list(session.exec(query))


def _check_scope(
    session: Session, actor: User, role: Role, institution_id: int | None, lab_id: int | None
) -> tuple[int | None, int | None]:
    """What an actor may set; returns the (institution, lab) to store."""
    if lab_id is not None:
        lab = session.get(Lab, lab_id)
        if lab is None:
            raise Invalid(f"no lab {lab_id}")
        if institution_id is None:
            institution_id = lab.institution_id
        elif lab.institution_id != institution_id:
            raise Invalid(f"lab {lab.code} does not belong to institution {institution_id}")
    if institution_id is not None and session.get(Institution, institution_id) is None:
        raise Invalid(f"no institution {institution_id}")
    if role == Role.lab_manager and lab_id is None:
        raise Invalid("a lab_manager needs a lab")
    if actor.role == Role.institution_admin:
        if role == Role.network_admin:
            raise Forbidden("only a network admin may grant network_admin")
        if institution_id != actor.institution_id:
            raise Forbidden("institution admins manage only their own institution's users")
    return institution_id, lab_id


def _managed_user(session: Session, actor: User, user_id: int) -> User:
    row = session.get(User, user_id)
    if row is None:
        raise NotFound(f"no user {user_id}")
    if actor.role == Role.institution_admin and (
        row.institution_id != actor.institution_id or row.role == Role.network_admin
    ):
        raise Forbidden("institution admins manage only their own institution's users")
    return row


def users_list(
    session: Session, *, actor: User, institution_id: int | None, after: int | None, limit: int
) -> tuple[list[User], int | None]:
    """Users by id; institution admins see only their own institution's."""
    if actor.role == Role.institution_admin:
        institution_id = actor.institution_id
    query = select(User).order_by(col(User.id))
    if institution_id is not None:
        query = query.where(User.institution_id == institution_id)
    if after is not None:
        query = query.where(col(User.id) > after)
    rows = list(session.exec(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def user_admin_create(session: Session, *, data: UserIn, actor: User) -> User:
    """Create an account with a role (institution admins: within their institution)."""
    institution_id = data.institution_id
    if institution_id is None and actor.role == Role.institution_admin:
        institution_id = actor.institution_id
    institution_id, lab_id = _check_scope(session, actor, data.role, institution_id, data.lab_id)
    row = user_create(
        session,
        email=data.email,
        password=data.password,
        role=data.role,
        name=data.name,
        institution_id=institution_id,
        lab_id=lab_id,
    )
    qualifications_claim(session, user=row)  # grants made to the email before it existed
    audit_record(
        session,
        actor_id=actor.id,
        action="user.create",
        entity="user",
        entity_id=row.id,
        after=_snapshot(row, USER_FIELDS),
    )
    return row


def user_admin_update(session: Session, *, user_id: int, data: UserPatch, actor: User) -> User:
    """Change a user's role, institution, lab, name or active flag."""
    row = _managed_user(session, actor, user_id)
    before = _snapshot(row, USER_FIELDS)
    changes = data.model_dump(exclude_unset=True)
    role = changes.get("role") or row.role
    institution_id = changes.get("institution_id", row.institution_id)
    lab_id = changes.get("lab_id", row.lab_id)
    if role != Role.lab_manager and "lab_id" not in changes:
        lab_id = row.lab_id
    institution_id, lab_id = _check_scope(session, actor, role, institution_id, lab_id)
    if row.id == actor.id and (role != actor.role or changes.get("is_active") is False):
        raise Conflict("you cannot change your own role or deactivate yourself")
    row.role, row.institution_id, row.lab_id = role, institution_id, lab_id
    for name in ("name", "is_active"):
        if name in changes and changes[name] is not None:
            setattr(row, name, changes[name])
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="user.update",
        entity="user",
        entity_id=row.id,
        before=before,
        after=_snapshot(row, USER_FIELDS),
    )
    return row


def evaluation_set(
    session: Session, *, instrument_id: int, result: EvaluationResult, note: str, actor: User
) -> InstrumentEvaluation:
    """Record an instrument's evaluation; a failed one bars it from sharing rewards."""
    if session.get(Instrument, instrument_id) is None:
        raise NotFound(f"no instrument {instrument_id}")
    row = session.get(InstrumentEvaluation, instrument_id)
    before = _snapshot(row, ["result", "note"]) if row else None
    if row is None:
        row = InstrumentEvaluation(instrument_id=instrument_id, result=result)
    row.result, row.note, row.recorded_by_id = result, note, actor.id
    session.add(row)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="evaluation.set",
        entity="instrument",
        entity_id=instrument_id,
        before=before,
        after=_snapshot(row, ["result", "note"]),
    )
    return row


def audit_list(
    session: Session,
    *,
    actor: User,
    actor_id: int | None,
    entity: str | None,
    entity_id: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after: int | None,
    limit: int,
) -> tuple[list[AuditEntry], int | None]:
    """Audit entries newest first; institution admins see those made by their institution."""
    query = select(AuditEntry)
    if actor.role == Role.institution_admin:
        members = select(User.id).where(User.institution_id == actor.institution_id)
        query = query.where(col(AuditEntry.actor_id).in_(members))
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    if action:
        query = query.where(col(AuditEntry.action).startswith(action))
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if after is not None:
        query = query.where(col(AuditEntry.id) < after)
    rows = list(session.exec(query.order_by(col(AuditEntry.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
