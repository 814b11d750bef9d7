"""Qualifications: who may book an instrument that requires one."""

from __future__ import annotations

from sqlmodel import Session, col, select

from booking.access import require_manages
from booking.schemas import QualificationGrant, QualificationPublic
from core.errors import NotFound
from core.models import User
from instruments.models import Qualification
from instruments.service import instrument_get


def qualification_grant(
    session: Session, *, user: User, instrument_id: int, data: QualificationGrant
) -> tuple[QualificationPublic, bool]:
    """Let a person use the instrument; returns the grant and whether it is new."""
    instrument = instrument_get(session, instrument_id)
    require_manages(user, instrument)
    if data.user_id is not None:
        person = session.get(User, data.user_id)
    else:
        email = (data.email or "").strip().lower()
        person = session.exec(select(User).where(User.email == email)).first()
    if person is None or person.id is None:
        raise NotFound("no such user")
    existing = session.exec(
        select(Qualification).where(
            Qualification.user_id == person.id, Qualification.instrument_id == instrument_id
        )
    ).first()
    created = existing is None
    grant = existing or Qualification(
        user_id=person.id, instrument_id=instrument_id, granted_by_id=user.id
    )
    if created:
        session.add(grant)
        session.flush()
    return _qualification_public(grant, person), created


def _qualification_public(grant: Qualification, person: User) -> QualificationPublic:
    assert grant.id is not None and person.id is not None
    return QualificationPublic(
        id=grant.id,
        instrument_id=grant.instrument_id,
        user_id=person.id,
        email=person.email,
        name=person.name,
        granted_at=grant.granted_at,
    )


def qualification_list(
    session: Session, *, user: User, instrument_id: int
) -> list[QualificationPublic]:
    """Who may use the instrument (managers of its lab)."""
    instrument = instrument_get(session, instrument_id)
    require_manages(user, instrument)
    rows = session.exec(
        select(Qualification, User)
        .join(User, col(User.id) == Qualification.user_id)
        .where(Qualification.instrument_id == instrument_id)
        .order_by(col(Qualification.id))
    ).all()
    return [_qualification_public(q, u) for q, u in rows]
