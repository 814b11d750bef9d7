"""Once a booking's time has come: the owner cannot cancel it, and without a gateway it
completes when it ends, and is billed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from billing.invoices import invoice_run
from billing.models import Charge
from booking.models import Booking, BookingStatus
from core.db import session_scope
from core.models import Role
from core.periods import period_of
from tests.factories import auth, create_institution, create_instrument, create_lab, create_user


def _started(session: Session, minutes_ago: int, length: int) -> tuple[Booking, object, object]:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    owner = create_user(session, institution=create_institution(session))
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    booking = Booking(
        instrument_id=instrument.id, user_id=owner.id,
        start_at=now - timedelta(minutes=minutes_ago),
        end_at=now - timedelta(minutes=minutes_ago - length),
        status=BookingStatus.confirmed,
    )  # fmt: skip
    session.add(booking)
    session.commit()
    return booking, owner, manager


def test_the_owner_cannot_cancel_once_it_has_started(client: TestClient, session: Session) -> None:
    booking, owner, manager = _started(session, minutes_ago=30, length=60)
    refused = client.post(f"/api/v1/bookings/{booking.id}/cancel", headers=auth(owner))
    assert refused.status_code == 409
    assert "already started" in refused.json()["detail"]
    by_lab = client.post(f"/api/v1/bookings/{booking.id}/cancel", headers=auth(manager))
    assert by_lab.status_code == 200 and by_lab.json()["status"] == "cancelled"


def test_an_unwatched_booking_completes_when_it_ends_and_is_billed(session: Session) -> None:
    booking, _owner, _manager = _started(session, minutes_ago=120, length=60)
    with session_scope() as s:
        invoice_run(s, period=period_of(booking.start_at))
    session.expire_all()
    assert session.get(Booking, booking.id).status == BookingStatus.completed
    charges = session.exec(select(Charge).where(Charge.booking_id == booking.id)).all()
    assert [c.kind for c in charges] == ["booking"]
