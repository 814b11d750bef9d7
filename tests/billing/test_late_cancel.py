"""Late-cancellation fees: only the booker's own late cancellation is charged."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from billing.invoices import invoice_run
from billing.models import Charge, ChargeKind
from billing.rates import policy_set
from billing.schemas import ChargingPolicyIn
from booking.models import Booking, BookingStatus
from booking.service import booking_cancel
from core.db import session_scope
from tests.billing.helpers import NOV, book


def test_a_lab_cancellation_inside_the_window_is_not_charged(session: Session, net) -> None:
    with session_scope() as s:
        policy_set(
            s,
            user=None,
            lab_code=net.lab.code,
            data=ChargingPolicyIn(late_cancel_window_minutes=24 * 60, late_cancel_fee=7000),
        )
    by_owner, by_lab, unknown = (
        book(
            session,
            instrument=net.instrument,
            user=net.researcher,
            start=NOV + timedelta(days=day),
            status=BookingStatus.confirmed,
        )
        for day in (1, 2, 3)
    )
    # Both cancelled two hours before the start, through the real cancel path.
    with session_scope() as s:
        booking_cancel(
            s,
            user=net.researcher,
            booking_id=by_owner.id,
            now=by_owner.start_at - timedelta(hours=2),
        )
        booking_cancel(
            s, user=net.manager, booking_id=by_lab.id, now=by_lab.start_at - timedelta(hours=2)
        )
    # A cancellation from before cancellers were recorded: nobody to hold responsible.
    with session_scope() as s:
        row = s.get(Booking, unknown.id)
        assert row is not None
        row.status = BookingStatus.cancelled
        row.cancelled_at = row.start_at - timedelta(hours=2)
    session.expire_all()
    assert session.get(Booking, by_owner.id).cancelled_by_id == net.researcher.id
    assert session.get(Booking, by_lab.id).cancelled_by_id == net.manager.id
    with session_scope() as s:
        report = invoice_run(s, period="2026-11")
    assert report.charges.late_cancel == 1
    session.commit()  # end this session's read snapshot (SQLite) so it sees the run's charges
    fees = session.exec(select(Charge).where(Charge.kind == ChargeKind.late_cancel)).all()
    assert [(c.source_id, c.user_id, c.amount) for c in fees] == [
        (by_owner.id, net.researcher.id, 7000)
    ]
