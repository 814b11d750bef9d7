"""Charging a booking to a project account (billing.projects), at what its time is
estimated to cost by the booker's price."""

from __future__ import annotations

from sqlmodel import Session

from billing.prices import estimate, prices_for
from billing.projects.links import link_charge
from billing.projects.models import AccountLink, LinkKind
from booking.models import ACTIVE_STATUSES, Booking
from core.errors import Conflict, Forbidden
from core.models import User
from core.timeutil import local_text


def booking_charge_to(
    session: Session, *, user: User, booking_id: int, account_id: int
) -> AccountLink:
    """Charge one's own booking to an account, at what its time is estimated to cost (a
    price per sample counts nothing until the samples are known)."""
    booking = session.get(Booking, booking_id)
    if booking is None or booking.user_id != user.id:
        raise Forbidden(f"booking {booking_id} is not yours")
    if booking.status not in ACTIVE_STATUSES:
        raise Conflict(f"booking {booking_id} is {booking.status.value}",
                       status=booking.status.value)  # fmt: skip
    price = prices_for(session, user, [booking.instrument_id]).get(booking.instrument_id)
    minutes = int((booking.end_at - booking.start_at).total_seconds() // 60)
    amount = (estimate(price, minutes) if price else None) or 0
    return link_charge(session, user=user, account_id=account_id, kind=LinkKind.booking,
                       source_id=booking_id, amount=amount,
                       what=f"Booking {booking_id} at {local_text(booking.start_at)}")  # fmt: skip
