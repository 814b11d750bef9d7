"""Assisted use: a booker asks for one of the lab's operators when booking; the lab accepts,
naming the operator (the assisted rate then applies: billing reads `booking.assistance`),
or declines with a reason. Either side is told; each decision is audited."""

from __future__ import annotations

from sqlmodel import Session

from booking.access import lab_managers, lab_person, manages
from booking.errors import BookingNotFound, NotAllowed
from booking.models import ACTIVE_STATUSES, Assistance, Booking
from booking.notifications.outbox import notify
from core.audit import audit_record
from core.errors import Conflict, Invalid
from core.models import User
from core.timeutil import local_text
from instruments.models import Instrument
from instruments.service import instrument_get


def assistance_request(session: Session, booking: Booking, instrument: Instrument) -> None:
    """Mark a new booking as asking for an operator and tell the lab's managers."""
    booking.assistance = Assistance.requested
    session.add(booking)
    for manager in lab_managers(session, instrument.lab_id):
        notify(
            session,
            user_id=manager.id or 0,
            kind="assistance_requested",
            subject=f"An operator is asked for on {instrument.name}",
            body=f"For the booking at {local_text(booking.start_at)}; accept it naming the "
            "operator, or decline it.",
            data={"booking_id": booking.id, "instrument_id": instrument.id},
            booking_id=booking.id,
        )


def assistance_decide(
    session: Session,
    *,
    user: User,
    booking_id: int,
    accept: bool,
    operator_email: str | None = None,
    reason: str = "",
) -> Booking:
    """The lab accepts (naming its operator; again to name another) or declines (with a
    reason) a booking's request for an operator."""
    booking = session.get(Booking, booking_id)
    if booking is None:
        raise BookingNotFound(booking_id)
    instrument = instrument_get(session, booking.instrument_id, for_update=True)
    if not manages(user, instrument):
        if booking.user_id == user.id:
            raise NotAllowed("the lab decides on a request for an operator")
        raise BookingNotFound(booking_id)
    session.refresh(booking)
    if booking.assistance is None:
        raise Conflict("this booking did not ask for an operator")
    if booking.status not in ACTIVE_STATUSES:
        raise Conflict(f"the booking is {booking.status.value}", status=booking.status.value)
    operator: User | None = None
    if accept:
        operator = lab_person(session, instrument.lab_id, operator_email)
        if operator is None:
            raise Invalid("operator_email: one of the lab's people operates it")
    elif not reason.strip():
        raise Invalid("reason: say why, the booker reads it")
    before = {"assistance": booking.assistance.value, "operator_id": booking.operator_id}
    booking.assistance = Assistance.accepted if accept else Assistance.declined
    booking.operator_id = operator.id if operator else None
    booking.version += 1
    session.add(booking)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="booking.assistance",
        entity="booking",
        entity_id=booking.id,
        before=before,
        after={"assistance": booking.assistance.value, "operator_id": booking.operator_id,
               "reason": reason.strip()[:500]},
    )  # fmt: skip
    notify(
        session,
        user_id=booking.user_id,
        kind="assistance_accepted" if accept else "assistance_declined",
        subject=(
            f"{operator.name or operator.email} will operate {instrument.name} for you"
            if operator
            else f"The lab cannot give an operator for {instrument.name}"
        ),
        body=(
            f"Your booking at {local_text(booking.start_at)} is assisted: the assisted rate applies."
            if operator
            else f"Your booking at {local_text(booking.start_at)} stays, without an operator: "
            f"{reason.strip()}"
        ),
        data={"booking_id": booking.id, "instrument_id": instrument.id},
        booking_id=booking.id,
    )
    return booking
