"""Who may act on an instrument's bookings, blackouts and qualifications: a manager of the
instrument's lab, or a network administrator (the catalog itself is the lab's alone)."""

from __future__ import annotations

from booking.errors import NotAllowed
from core.models import Role, User
from instruments.models import Instrument
from instruments.service import can_manage


def manages(user: User, instrument: Instrument) -> bool:
    """A manager of the instrument's lab, or a network administrator."""
    return can_manage(user, instrument) or user.role == Role.network_admin


def require_manages(user: User, instrument: Instrument) -> None:
    """403 unless `manages(user, instrument)`."""
    if not manages(user, instrument):
        raise NotAllowed("only a manager of the instrument's lab may do this")
