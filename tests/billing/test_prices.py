"""The prices pages show are the prices billing charges: one choice, in Python and in SQL."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select

from billing.invoices import invoice_run
from billing.models import Charge
from billing.prices import prices_for, prices_in_force
from billing.rates import rate_card_create
from billing.schemas import RateCardIn
from core.db import session_scope
from instruments.models import PayerClass
from tests.billing.helpers import NOV, use


def test_each_payer_is_shown_the_price_billing_charges(session: Session, net) -> None:  # type: ignore[no-untyped-def]
    # The factory publishes 300.00/h academic; cards for two classes override or add.
    with session_scope() as s:
        for payer_class, amount in ((PayerClass.internal, 6000), (PayerClass.company, 60000)):
            rate_card_create(
                s,
                user=None,
                data=RateCardIn(
                    instrument_id=net.instrument.id,
                    payer_class=payer_class,
                    amount=amount,
                    effective_from=NOV - timedelta(days=60),
                ),
            )
    payers = [net.insider, net.researcher, net.engineer, net.founder]
    for n, person in enumerate(payers):
        use(session, instrument=net.instrument, user=person, start=NOV + timedelta(days=n),
            minutes=60)  # fmt: skip
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    session.expire_all()
    charged = {
        c.user_id: c.unit_amount for c in session.exec(select(Charge).order_by(col(Charge.id)))
    }
    for person in payers:
        shown = prices_for(session, person, [net.instrument.id])[net.instrument.id]
        assert shown.amount == charged[person.id], (person.email, shown)

    table = prices_in_force(session, [net.instrument.id])[net.instrument.id]
    assert table[PayerClass.internal].source == "card"
    assert table[PayerClass.academic].source == "published"  # no card: the published rate
    # A small company without a price of its own pays the company's.
    assert table[PayerClass.small_company].amount == 60000
