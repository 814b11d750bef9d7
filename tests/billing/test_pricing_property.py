"""The set-based SQL prices every booking exactly as the written rules say, on both databases."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from billing.invoices import invoice_run
from billing.models import Charge, ChargeBasis
from billing.rates import assisted_set, policy_set, rate_card_create
from billing.schemas import ChargingPolicyIn, RateCardIn
from core.db import session_scope
from instruments.models import InstitutionKind, PayerClass
from tests.billing.helpers import book, create_user, use
from tests.factories import create_institution, create_instrument, create_lab

_months = itertools.count(0)


def _ceil_to(minutes: int, step: int) -> int:
    return -(-minutes // step) * step


def expected(
    *,
    basis: ChargeBasis,
    booked: int,
    used: int,
    step: int,
    amount: int,
    minimum: int,
    surcharge: int,
    assisted: bool,
) -> dict[str, int]:
    """The rules, written plainly: what each line of the booking costs."""
    over = max(0, used - booked)
    billed = {
        ChargeBasis.booked: booked,
        ChargeBasis.used: used,
        ChargeBasis.larger: max(booked, used),
    }[basis]
    quantity = _ceil_to(billed, step)
    base = (amount * quantity + 30) // 60
    extra = (surcharge * quantity + 30) // 60 if assisted else 0
    lines = {"booking": max(base + extra, minimum)}
    if basis == ChargeBasis.booked and over > 0:
        lines["overtime"] = (amount * _ceil_to(over, step) + 30) // 60
    return lines


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    basis=st.sampled_from(list(ChargeBasis)),
    booked=st.integers(15, 600),
    used=st.integers(1, 700),
    step=st.sampled_from([1, 5, 15, 30, 60]),
    amount=st.integers(0, 10**7),
    minimum=st.integers(0, 10**6),
    surcharge=st.integers(0, 10**6),
    assisted=st.booleans(),
)
def test_sql_prices_like_the_rules(
    engine, basis, booked, used, step, amount, minimum, surcharge, assisted
) -> None:
    n = next(_months)
    start = datetime(2031 + n // 12, n % 12 + 1, 10, 2, 0, tzinfo=UTC)
    period = f"{start.year:04d}-{start.month:02d}"
    with Session(engine, expire_on_commit=False) as session:
        provider = create_institution(session)
        lab = create_lab(session, institution=provider)
        instrument = create_instrument(session, lab=lab)
        payer = create_institution(session, kind=InstitutionKind.company)
        user = create_user(session, institution=payer)
        booking = book(session, instrument=instrument, user=user, start=start, minutes=booked)
        use(session, instrument=instrument, user=user, start=start, minutes=used, booking=booking)
    with session_scope() as s:
        rate_card_create(
            s,
            user=None,
            data=RateCardIn(
                instrument_id=instrument.id,
                payer_class=PayerClass.company,
                amount=amount,
                minimum_charge=minimum,
                rounding_minutes=step,
                assisted_surcharge=surcharge,
                effective_from=start - timedelta(days=1),
            ),
        )
        policy_set(s, user=None, lab_code=lab.code, data=ChargingPolicyIn(basis=basis))
        if assisted:
            assisted_set(s, user=None, booking_id=booking.id, assisted=True)
        invoice_run(s, period=period)
    with Session(engine) as session:
        charges = session.exec(select(Charge).where(Charge.booking_id == booking.id)).all()
        got = {c.kind.value: c.amount for c in charges}
    assert got == expected(
        basis=basis,
        booked=booked,
        used=used,
        step=step,
        amount=amount,
        minimum=minimum,
        surcharge=surcharge,
        assisted=assisted,
    )
