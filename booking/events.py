"""What happens to bookings, as events for the world outside (`core.events`)."""

from __future__ import annotations

from sqlmodel import Session

from booking.models import Booking
from core.events import emit
from core.timeutil import to_utc_z


def event_data(booking: Booking) -> dict[str, object]:
    """What a booking's event says of it, besides its id."""
    return {
        "instrument_id": booking.instrument_id,
        "user_id": booking.user_id,
        "start": to_utc_z(booking.start_at),
        "end": to_utc_z(booking.end_at),
        "status": booking.status.value,
        "series_id": booking.series_id,
    }


def booking_event(session: Session, type: str, booking: Booking, *, lab_id: int) -> None:
    """Record `type` ("booking.created", ...) for the booking, as the lab's event."""
    emit(session, type, lab_id=lab_id, data={"booking_id": booking.id, **event_data(booking)})
