"""What became of a booking once its time came: completed (used, or simply over), or a no-show.

Booking owns these writes; telemetry (which sees who used what) and the end-of-booking
pass call them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlmodel import Session

from booking.models import Booking, BookingStatus

PIN_DIGITS = 6


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


def booking_pin(booking_id: int) -> str:
    """The six-digit PIN that checks a booking in at its instrument's kiosk, shown to its
    booker. Derived from the booking and the server's secret, so nothing is stored and a PIN
    says nothing about any other booking."""
    from core.settings import get_settings

    key = get_settings().signing_key().encode()
    digest = hmac.new(key, f"kiosk-pin:{booking_id}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**PIN_DIGITS:0{PIN_DIGITS}d}"
