"""Charges from bookings and usage: policies, rates, rounding, fees, walk-ups, charged once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, col, select

from billing.errors import PeriodClosed
from billing.invoices import invoice_close, invoice_run
from billing.models import Charge, ChargeBasis, ChargeKind, Invoice
from billing.rates import assisted_set, policy_set, rate_card_create
from billing.schemas import ChargingPolicyIn, RateCardIn
from booking.models import BookingStatus
from core.db import session_scope
from instruments.models import PayerClass, RateUnit
from tests.billing.helpers import NOV, book, use

PERIOD = "2026-11"


def _card(net, payer_class=PayerClass.academic, **fields) -> None:
    fields.setdefault("amount", 12000)
    fields.setdefault("effective_from", NOV - timedelta(days=60))
    with session_scope() as s:
        rate_card_create(
            s,
            user=None,
            data=RateCardIn(instrument_id=net.instrument.id, payer_class=payer_class, **fields),
        )


def _policy(net, **fields) -> None:
    with session_scope() as s:
        policy_set(s, user=None, lab_code=net.lab.code, data=ChargingPolicyIn(**fields))


def _run():
    with session_scope() as s:
        return invoice_run(s, period=PERIOD)


def _charges(session: Session) -> list[Charge]:
    session.expire_all()
    return list(session.exec(select(Charge).order_by(col(Charge.id))))


@pytest.mark.parametrize(
    ("basis", "expected"),
    [
        # 120 booked, 150 used (30 past the end); 12000/h, rounded up to 45 minutes.
        (ChargeBasis.booked, [("booking", 135, 27000), ("overtime", 45, 9000)]),
        (ChargeBasis.used, [("booking", 180, 36000)]),
        (ChargeBasis.larger, [("booking", 180, 36000)]),
    ],
)
def test_policy_decides_booked_used_or_larger(session, net, basis, expected) -> None:
    _card(net, rounding_minutes=45)
    _policy(net, basis=basis)
    b = book(session, instrument=net.instrument, user=net.researcher, minutes=120)
    use(session, instrument=net.instrument, user=net.researcher, start=NOV, minutes=150, booking=b)
    _run()
    got = [(c.kind.value, c.quantity, c.amount) for c in _charges(session)]
    assert got == expected


def test_minimum_surcharge_and_samples(session, net) -> None:
    _card(net, minimum_charge=5000, assisted_surcharge=6000)
    _card(net, PayerClass.company, unit=RateUnit.sample, amount=2500)
    short = book(session, instrument=net.instrument, user=net.researcher, minutes=10)
    assisted = book(
        session,
        instrument=net.instrument,
        user=net.researcher,
        start=NOV + timedelta(hours=3),
        minutes=60,
    )
    with session_scope() as s:
        assisted_set(s, user=None, booking_id=assisted.id, assisted=True)
    by_sample = book(
        session,
        instrument=net.instrument,
        user=net.engineer,
        start=NOV + timedelta(hours=5),
        minutes=60,
    )
    use(
        session,
        instrument=net.instrument,
        user=net.engineer,
        start=by_sample.start_at,
        minutes=50,
        booking=by_sample,
        samples=7,
    )
    _run()
    charges = {c.source_id: c for c in _charges(session)}
    assert charges[short.id].amount == 5000  # 10 min = 2000, raised to the minimum
    assert (charges[assisted.id].amount, charges[assisted.id].surcharge_amount) == (18000, 6000)
    assert (charges[by_sample.id].unit.value, charges[by_sample.id].quantity) == ("sample", 7)
    assert charges[by_sample.id].amount == 17500


def test_each_source_is_charged_once_and_lines_continue(session, net) -> None:
    b1 = book(session, instrument=net.instrument, user=net.researcher)
    use(session, instrument=net.instrument, user=net.researcher, start=NOV, minutes=100, booking=b1)
    first = _run()
    again = _run()
    assert first.charges.booking == 1 and again.charges.total == 0 and again.lines_added == 0
    book(session, instrument=net.instrument, user=net.researcher2, start=NOV + timedelta(days=2))
    third = _run()
    assert third.charges.booking == 1 and third.invoices_created == 0
    lines = [(c.line_no, c.source_id) for c in _charges(session)]
    assert lines == [(1, b1.id), (2, b1.id + 1)]
    invoice = session.exec(select(Invoice)).one()
    assert (invoice.number, invoice.line_count, invoice.subtotal) == (
        "INV-2026-11-UNIV-B",
        2,
        120000,
    )


def test_fees_walk_ups_and_payer_classes(session, net) -> None:
    _card(net, PayerClass.internal, amount=6000)
    _card(net, PayerClass.company, amount=60000)
    _policy(net, no_show_fee=10000, late_cancel_window_minutes=24 * 60, late_cancel_fee=7000)
    no_show = book(
        session, instrument=net.instrument, user=net.researcher, status=BookingStatus.no_show
    )
    late = book(
        session,
        instrument=net.instrument,
        user=net.researcher,
        start=NOV + timedelta(days=1),
        status=BookingStatus.cancelled,
        cancelled_at=NOV + timedelta(hours=20),
        cancelled_by=net.researcher,
    )
    book(
        session,
        instrument=net.instrument,
        user=net.researcher,
        start=NOV + timedelta(days=2),
        status=BookingStatus.cancelled,
        cancelled_at=NOV - timedelta(days=3),
        cancelled_by=net.researcher,
    )  # in time: free
    insider = use(
        session,
        instrument=net.instrument,
        user=net.insider,
        start=NOV + timedelta(days=3),
        minutes=60,
    )
    small = use(
        session,
        instrument=net.instrument,
        user=net.founder,
        start=NOV + timedelta(days=4),
        minutes=30,
    )
    use(session, instrument=net.instrument, user=None, start=NOV + timedelta(days=5), minutes=30)
    report = _run()
    assert report.charges.unpriced == 1  # the anonymous walk-up: nobody to bill
    got = {(c.kind, c.source_id): c for c in _charges(session)}
    assert got[(ChargeKind.no_show, no_show.id)].amount == 10000
    assert got[(ChargeKind.late_cancel, late.id)].amount == 7000
    assert len([k for k in got if k[0] == ChargeKind.late_cancel]) == 1
    assert got[(ChargeKind.walk_up, insider.id)].payer_class == PayerClass.internal
    assert got[(ChargeKind.walk_up, insider.id)].amount == 6000
    tiny = got[(ChargeKind.walk_up, small.id)]
    # No small-company price: it pays the company price, and vouchers may pay part.
    assert (tiny.payer_class, tiny.amount, tiny.voucher_eligible) == (
        PayerClass.small_company,
        30000,
        True,
    )
    payers = {i.payer_institution_id for i in session.exec(select(Invoice))}
    assert payers == {net.academic.id, net.provider.id, net.small.id}


def test_a_new_rate_never_rewrites_history(session, net) -> None:
    _card(net, amount=10000, effective_from=NOV - timedelta(days=60))
    _card(net, amount=20000, effective_from=NOV + timedelta(days=1))
    before = book(session, instrument=net.instrument, user=net.researcher, minutes=60)
    after = book(
        session,
        instrument=net.instrument,
        user=net.researcher,
        start=NOV + timedelta(days=2),
        minutes=60,
    )
    _run()
    amounts = {c.source_id: c.amount for c in _charges(session)}
    assert amounts == {before.id: 10000, after.id: 20000}


def test_a_closed_month_cannot_be_run_again(session, net) -> None:
    book(session, instrument=net.instrument, user=net.researcher)
    with session_scope() as s:
        invoice_close(s, period=PERIOD)
    book(session, instrument=net.instrument, user=net.researcher2, start=NOV + timedelta(days=1))
    with pytest.raises(PeriodClosed), session_scope() as s:
        invoice_run(s, period=PERIOD)
    with pytest.raises(PeriodClosed), session_scope() as s:
        invoice_close(s, period=PERIOD)
    assert len(_charges(session)) == 1
