"""Badges: the only way a gateway may name a person.

A lab manager registers badges for the people who use the lab (its institution's people,
and those who booked or were qualified on its instruments); a network administrator for
anyone. A gateway's event then names a badge, never a user id: what it sends that no
badge matches holds the session for the lab to confirm.
"""

from __future__ import annotations

import re

from sqlalchemy import insert
from sqlmodel import Session, col, select

from booking.models import Booking
from core.audit import audit_record
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.models import Role, User, utcnow
from instruments.models import Instrument, Lab, Qualification
from telemetry.models import Badge

BADGE_CODE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BadgeNotFound(NotFound):
    def __init__(self, badge_id: int) -> None:
        super().__init__(f"no badge {badge_id}")


def _may_manage_badges_of(actor: User, lab: Lab) -> None:
    if actor.role == Role.network_admin:
        return
    if actor.role == Role.lab_manager and actor.lab_id == lab.id:
        return
    raise Forbidden("badges are registered by the lab's managers and network administrators")


def known_to_lab(session: Session, lab: Lab, person: User) -> bool:
    """Someone the lab has dealings with: its institution's people, or people who booked
    or were qualified on its instruments."""
    if person.institution_id is not None and person.institution_id == lab.institution_id:
        return True
    lab_instruments = select(Instrument.id).where(Instrument.lab_id == lab.id)
    booked = session.exec(
        select(Booking.id)
        .where(Booking.user_id == person.id, col(Booking.instrument_id).in_(lab_instruments))
        .limit(1)
    ).first()
    if booked is not None:
        return True
    qualified = session.exec(
        select(Qualification.id)
        .where(
            Qualification.user_id == person.id,
            col(Qualification.instrument_id).in_(lab_instruments),
        )
        .limit(1)
    ).first()
    return qualified is not None


def badge_register(
    session: Session, *, actor: User, lab: Lab | None, code: str, email: str
) -> Badge:
    """Register `code` as the badge of the person with `email` (for `lab`, or network-wide
    when a network administrator gives no lab)."""
    code = code.strip()
    if not BADGE_CODE.match(code):
        raise Invalid("code: 1 to 64 letters, digits or . _ : -")
    if lab is None:
        if actor.role != Role.network_admin:
            raise Forbidden("only network administrators register badges network-wide")
    else:
        _may_manage_badges_of(actor, lab)
    person = session.exec(select(User).where(User.email == email.strip().lower())).first()
    # The same answer for an unknown email and a stranger: a manager cannot probe the
    # network's accounts through badges.
    if (
        person is None
        or not person.is_active
        or (
            (lab is not None and actor.role != Role.network_admin)
            and not known_to_lab(session, lab, person)
        )
    ):
        raise NotFound(
            "no one with that email uses this lab (ask a network administrator to register "
            "badges for people from elsewhere)"
        )
    if session.exec(select(Badge.id).where(Badge.code == code)).first() is not None:
        raise Conflict(f"the badge {code!r} is registered already")
    assert person.id is not None
    badge = Badge(
        code=code,
        user_id=person.id,
        lab_id=lab.id if lab else None,
        created_by_id=actor.id,
    )
    session.add(badge)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="badge.register",
        entity="badge",
        entity_id=badge.id,
        after={"code": code, "user_id": person.id, "lab_id": badge.lab_id},
    )
    return badge


def badge_revoke(session: Session, *, actor: User, badge_id: int) -> Badge:
    """Forget a badge: later events naming it are held, like an unknown badge."""
    badge = session.get(Badge, badge_id)
    if badge is None:
        raise BadgeNotFound(badge_id)
    if badge.lab_id is None:
        if actor.role != Role.network_admin:
            raise BadgeNotFound(badge_id)
    else:
        lab = session.get(Lab, badge.lab_id)
        assert lab is not None
        try:
            _may_manage_badges_of(actor, lab)
        except Forbidden:
            raise BadgeNotFound(badge_id)
    session.delete(badge)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="badge.revoke",
        entity="badge",
        entity_id=badge_id,
        before={"code": badge.code, "user_id": badge.user_id, "lab_id": badge.lab_id},
    )
    return badge


def badge_list(session: Session, *, actor: User, lab: Lab) -> list[tuple[Badge, User]]:
    """The badges a lab registered, with whose they are."""
    _may_manage_badges_of(actor, lab)
    return [
        (badge, person)
        for badge, person in session.exec(
            select(Badge, User)
            .join(User, col(User.id) == Badge.user_id)
            .where(Badge.lab_id == lab.id)
            .order_by(col(Badge.code))
        ).all()
    ]


def badge_owners(session: Session, codes: set[str]) -> dict[str, int]:
    """Who each registered badge belongs to (active people only)."""
    if not codes:
        return {}
    rows = session.exec(
        select(Badge.code, Badge.user_id)
        .join(User, col(User.id) == Badge.user_id)
        .where(col(Badge.code).in_(codes), col(User.is_active).is_(True))
    ).all()
    return dict(rows)


def badges_seed(session: Session) -> int:
    """The demo's badges: one per active person without one, `B` and their id, registered
    network-wide (what a city card system would load); returns how many were added."""
    have = select(Badge.user_id)
    rows = [
        {"code": f"B{uid:06d}", "user_id": uid, "lab_id": None, "created_at": utcnow()}
        for uid in session.exec(
            select(User.id)
            .where(col(User.is_active), col(User.id).not_in(have))
            .order_by(col(User.id))
        ).all()
    ]
    if rows:
        session.execute(insert(Badge), rows)
    return len(rows)
