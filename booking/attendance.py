"""What became of a booking once its time came: completed (used, or simply over), or a no-show.

Booking owns these writes; telemetry (which sees who used what) and the end-of-booking
pass call them.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from booking.models import Booking, BookingStatus


def _settle(session: Session, booking: Booking, status: BookingStatus, now: datetime) -> None:
    booking.status = status
    booking.version += 1
    booking.updated_at = now
    session.add(booking)


def booking_complete(session: Session, *, booking: Booking, now: datetime) -> None:
    """The booking's time is over and it was used (or nobody could tell otherwise)."""
    _settle(session, booking, BookingStatus.completed, now)


def booking_mark_no_show(session: Session, *, booking: Booking, now: datetime) -> None:
    """Nobody used the booked time within the lab's grace: a no-show (its fee may apply)."""
    _settle(session, booking, BookingStatus.no_show, now)
