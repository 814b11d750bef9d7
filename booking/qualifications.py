"""Qualifications: who may book an instrument that requires one.

A lab grants by exact email, and gets the same answer whether or not an account has that
email (a grant to an address without one waits for the account, which claims it when it
is created): a manager cannot use grants to learn who is on the network, nor see the
name of someone who never booked with the lab. A revoked grant keeps its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from booking.access import require_manages
from booking.models import Booking
from booking.schemas import QualificationGrant, QualificationPublic
from core.audit import audit_record, audit_value
from core.errors import Invalid, NotFound
from core.models import User
from core.service import EMAIL
from core.timeutil import utcnow
from instruments.models import (
    Instrument,
    Qualification,
    qualification_in_force,
    qualification_not_revoked,
)
from instruments.service import instrument_get


class QualificationNotFound(NotFound):
    def __init__(self, qualification_id: int) -> None:
        super().__init__(f"no qualification {qualification_id} on this instrument")


def _booked_with_lab(session: Session, lab_id: int, user_ids: set[int]) -> set[int]:
    """The people among `user_ids` who booked one of the lab's instruments."""
    if not user_ids:
        return set()
    rows = session.exec(
        select(Booking.user_id)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .where(Instrument.lab_id == lab_id, col(Booking.user_id).in_(user_ids))
        .distinct()
    ).all()
    return set(rows)


def _public(grant: Qualification, person: User | None, *, known: bool) -> QualificationPublic:
    assert grant.id is not None
    return QualificationPublic(
        id=grant.id,
        instrument_id=grant.instrument_id,
        email=grant.email or (person.email if person else ""),
        # Who they are, only for people who have booked with the lab.
        user_id=person.id if person and known else None,
        name=person.name if person and known else "",
        granted_at=grant.granted_at,
        level=grant.level,
        expires_at=grant.expires_at,
    )


def qualification_grant(
    session: Session, *, user: User, instrument_id: int, data: QualificationGrant
) -> tuple[QualificationPublic, bool]:
    """Let the person with this email use the instrument; returns the grant and whether it
    is new. The same answer whether or not an account has the email."""
    instrument = instrument_get(session, instrument_id)
    require_manages(user, instrument)
    email = data.email.strip().lower()
    person = session.exec(select(User).where(User.email == email)).first()
    holder = (
        col(Qualification.user_id) == person.id
        if person
        else (col(Qualification.email) == email) & col(Qualification.user_id).is_(None)
    )
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise Invalid("expires_at: must be in the future")
    # One grant not revoked per person: granting again (a refresher) renews it.
    existing = session.exec(
        select(Qualification).where(
            holder, Qualification.instrument_id == instrument_id, qualification_not_revoked()
        )
    ).first()
    created = existing is None
    grant = existing or Qualification(
        user_id=person.id if person else None,
        email=email,
        instrument_id=instrument_id,
        granted_by_id=user.id,
    )
    changed = created or (grant.level, grant.expires_at) != (data.level, data.expires_at)
    if changed:
        before = (
            None
            if created
            else {"level": grant.level.value, "expires_at": audit_value(grant.expires_at)}
        )
        grant.level = data.level
        grant.expires_at = data.expires_at
        if not created:
            grant.granted_at = utcnow()
            grant.granted_by_id = user.id
        session.add(grant)
        session.flush()
        audit_record(
            session,
            actor_id=user.id,
            action="qualification.grant" if created else "qualification.renew",
            entity="qualification",
            entity_id=grant.id,
            before=before,
            after={
                "instrument_id": instrument_id,
                "email": email,
                "level": data.level.value,
                "expires_at": audit_value(data.expires_at),
            },
        )
    known = (
        person is not None
        and person.id is not None
        and person.id in _booked_with_lab(session, instrument.lab_id, {person.id})
    )
    return _public(grant, person, known=known), created


def qualification_list(
    session: Session, *, user: User, instrument_id: int
) -> list[QualificationPublic]:
    """The grants in force on the instrument (managers of its lab)."""
    instrument = instrument_get(session, instrument_id)
    require_manages(user, instrument)
    rows = session.exec(
        select(Qualification, User)
        .outerjoin(User, col(User.id) == Qualification.user_id)
        .where(Qualification.instrument_id == instrument_id, qualification_in_force())
        .order_by(col(Qualification.id))
    ).all()
    known = _booked_with_lab(
        session, instrument.lab_id, {u.id for _q, u in rows if u is not None and u.id}
    )
    return [_public(q, u, known=u is not None and u.id in known) for q, u in rows]


def qualification_revoke(
    session: Session,
    *,
    user: User,
    instrument_id: int,
    qualification_id: int,
    reason: str = "",
    now: datetime | None = None,
) -> None:
    """Withdraw a grant (its lab's managers): its holder can no longer book; audited."""
    instrument = instrument_get(session, instrument_id)
    require_manages(user, instrument)
    grant = session.get(Qualification, qualification_id)
    if grant is None or grant.instrument_id != instrument_id or grant.revoked_at is not None:
        raise QualificationNotFound(qualification_id)
    grant.revoked_at = now or utcnow()
    grant.revoked_by_id = user.id
    grant.revoke_reason = reason[:500] or None
    session.add(grant)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="qualification.revoke",
        entity="qualification",
        entity_id=grant.id,
        before={"instrument_id": instrument_id, "user_id": grant.user_id, "email": grant.email},
        after={"reason": reason[:500]},
    )


def qualifications_claim(session: Session, *, user: User) -> int:
    """A new account takes the grants made to its email before it existed."""
    if not EMAIL.match(user.email):
        return 0
    pending = (
        col(Qualification.email) == user.email.lower(),
        col(Qualification.user_id).is_(None),
        qualification_in_force(),
    )
    result = session.exec(  # type: ignore[call-overload]
        update(Qualification).where(*pending).values(user_id=user.id)
    )
    return int(result.rowcount or 0)


def training_needed(session: Session, user: User | None, instrument_ids: Sequence[int]) -> set[int]:
    """Of these instruments, those that need a qualification the person does not hold (all
    that need one, for someone not signed in): a catalog marks them."""
    if not instrument_ids:
        return set()
    needing = set(
        session.exec(
            select(Instrument.id).where(
                col(Instrument.id).in_(list(instrument_ids)),
                col(Instrument.qualification_required).is_(True),
            )
        ).all()
    )
    if not needing or user is None:
        return {i for i in needing if i is not None}
    held = session.exec(
        select(Qualification.instrument_id).where(
            Qualification.user_id == user.id,
            col(Qualification.instrument_id).in_(needing),
            qualification_in_force(),
        )
    ).all()
    return {i for i in needing if i is not None} - set(held)
