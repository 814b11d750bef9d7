"""A new price never reaches under what was already billed, nor into a closed month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from billing.invoices import invoice_close, invoice_run
from billing.models import Charge
from booking.models import BookingStatus
from core.db import session_scope
from tests.billing.helpers import NOV, book
from tests.factories import auth


def _card(net, **fields) -> dict:
    return {
        "instrument_id": net.instrument.id,
        "payer_class": "academic",
        "amount": 50000,
        **fields,
    }


def _run(period: str) -> None:
    with session_scope() as s:
        invoice_run(s, period=period)


def test_a_rate_card_cannot_start_under_a_run_that_charged_its_instrument(
    client, session: Session, net
) -> None:
    """A manager created a card effective from a month that already had draft invoices."""
    book(session, instrument=net.instrument, user=net.researcher)
    _run("2026-11")
    headers = auth(net.manager)
    back = client.post(
        "/api/v1/rate-cards",
        json=_card(net, effective_from="2026-11-01T00:00:00+08:00"),
        headers=headers,
    )
    assert back.status_code == 409, back.text
    assert "already invoiced" in back.json()["detail"] and back.json()["earliest"]
    # From the moment of the run on, the new card is fine.
    later = client.post(
        "/api/v1/rate-cards",
        json=_card(net, effective_from=back.json()["earliest"]),
        headers=headers,
    )
    assert later.status_code == 201, later.text


def test_an_open_ended_card_cannot_cover_a_closed_month(client, session: Session, net) -> None:
    """After a month was closed, an open-ended card starting before it was accepted."""
    book(session, instrument=net.instrument, user=net.researcher, start=NOV - timedelta(days=30))
    _run("2026-10")
    with session_scope() as s:
        invoice_close(s, period="2026-10")
    other = client.post(
        "/api/v1/rate-cards",
        json=_card(net, payer_class="company", effective_from="2026-09-15T00:00:00+08:00"),
        headers=auth(net.manager),
    )
    assert other.status_code == 409, other.text


def test_a_policy_change_keeps_the_fees_of_what_came_before(client, session: Session, net) -> None:
    """A no-show before the change keeps the old (no) fee; one after pays the new fee."""
    url = f"/api/v1/labs/{net.lab.code}/charging-policy"
    headers = auth(net.manager)
    assert client.put(url, json={"no_show_fee": 1000}, headers=headers).status_code == 200
    early = book(
        session, instrument=net.instrument, user=net.researcher, status=BookingStatus.no_show
    )
    _run("2026-11")
    # Back into the month that was run for this lab: refused.
    back = client.put(
        url, json={"no_show_fee": 9000, "effective_from": "2026-11-01T00:00:00+08:00"},
        headers=headers,
    )  # fmt: skip
    assert back.status_code == 409, back.text
    changed = client.put(url, json={"no_show_fee": 9000}, headers=headers)
    assert changed.status_code == 200, changed.text
    since = datetime.fromisoformat(changed.json()["effective_from"].replace("Z", "+00:00"))
    assert since > NOV
    late_start = since + timedelta(hours=1)
    late = book(
        session, instrument=net.instrument, user=net.researcher2, start=late_start,
        status=BookingStatus.no_show,
    )  # fmt: skip
    # An unbilled no-show from before the change, booked now (say, a late correction).
    before = book(
        session, instrument=net.instrument, user=net.researcher2, start=since - timedelta(hours=3),
        status=BookingStatus.no_show,
    )  # fmt: skip
    for period in sorted({"2026-11", late_start.astimezone(UTC).strftime("%Y-%m")}):
        _run(period)
    session.expire_all()
    fees = {
        c.booking_id: c.amount
        for c in session.exec(select(Charge).where(Charge.kind == "no_show")).all()
    }
    assert fees[early.id] == 1000
    assert fees[before.id] == 1000  # priced by the policy in force when it happened
    assert fees[late.id] == 9000
