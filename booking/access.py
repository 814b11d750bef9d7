"""Who may act on an instrument's bookings, blackouts, qualifications and training: a
manager of the instrument's lab, or a network administrator (the catalog itself is the
lab's alone); and who is told of what a lab must decide."""

from __future__ import annotations

from sqlmodel import Session, col, select

from booking.errors import NotAllowed
from core.models import Role, User
from instruments.models import Instrument


def manages_lab(user: User, lab_id: int) -> bool:
    """A manager of the lab, or a network administrator."""
    return (user.role == Role.lab_manager and user.lab_id == lab_id) or (
        user.role == Role.network_admin
    )


def manages(user: User, instrument: Instrument) -> bool:
    """A manager of the instrument's lab, or a network administrator."""
    return manages_lab(user, instrument.lab_id)


def lab_managers(session: Session, lab_id: int) -> list[User]:
    """The lab's active managers: whom its requests, reports and approvals are told to."""
    return list(
        session.exec(
            select(User)
            .where(
                User.lab_id == lab_id,
                User.role == Role.lab_manager,
                col(User.is_active).is_(True),
            )
            .order_by(col(User.id))
        ).all()
    )


def require_manages(user: User, instrument: Instrument) -> None:
    """403 unless `manages(user, instrument)`."""
    if not manages(user, instrument):
        raise NotAllowed("only a manager of the instrument's lab may do this")


def lab_person(session: Session, lab_id: int, email: str | None) -> User | None:
    """The active person of this lab with this email (an operator, a trainer), or None."""
    address = (email or "").strip().lower()
    if not address:
        return None
    person = session.exec(select(User).where(User.email == address)).first()
    if person is None or person.lab_id != lab_id or not person.is_active:
        return None
    return person
