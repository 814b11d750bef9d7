"""Stripe through stripe-python against a local server; webhooks signed as Stripe signs them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from billing.cli import invoices_app
from billing.ledger import balances
from billing.models import Invoice, StripeEvent
from billing.vouchers import ProgrammeIn, programme_create
from core.db import session_scope
from core.settings import get_settings
from tests.billing.fake_stripe import FakeStripe, sign, start_fake_stripe
from tests.billing.helpers import NOV, book
from tests.factories import issue_voucher

SECRET = "whsec_test_secret"
runner = CliRunner()


@pytest.fixture
def stripe_fake(engine, monkeypatch) -> Iterator[FakeStripe]:
    fake, server = start_fake_stripe()
    monkeypatch.setenv("LABSHARE_STRIPE_API_KEY", "sk_test_labshare")
    monkeypatch.setenv("LABSHARE_STRIPE_API_BASE", fake.base)
    monkeypatch.setenv("LABSHARE_STRIPE_WEBHOOK_SECRET", SECRET)
    get_settings.cache_clear()
    yield fake
    server.shutdown()
    server.server_close()


def _event(event_id: str, kind: str, obj: dict) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "api_version": "2026-10-28",
            "created": int(time.time()),
            "data": {"object": obj},
        }
    )


def _post(client, payload: str, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/api/v1/billing/stripe/webhook", content=payload, headers=headers)


def _close_and_send(session, net) -> Invoice:
    with session_scope() as s:
        programme = programme_create(
            s,
            data=ProgrammeIn(
                code="IV",
                name="Innovation vouchers",
                currency="cny",
                budget=10**7,
                coverage_bp=2500,
                company_yearly_cap=10**6,
                starts_on=date(2026, 1, 1),
                ends_on=date(2026, 12, 31),
            ),
        )
        programme_id = programme.id or 0
    issue_voucher(session, programme_id=programme_id, institution=net.small, amount=10**6)
    # The small company pays the academic rate here (a fallback would need a card): use UNIV-B
    # researchers, plus the small company through a company card.
    from billing.rates import rate_card_create
    from billing.schemas import RateCardIn
    from instruments.models import PayerClass

    with session_scope() as s:
        rate_card_create(
            s,
            user=None,
            data=RateCardIn(
                instrument_id=net.instrument.id,
                payer_class=PayerClass.company,
                amount=20000,
                effective_from=NOV - timedelta(days=30),
            ),
        )
    book(session, instrument=net.instrument, user=net.founder, minutes=60)
    book(
        session,
        instrument=net.instrument,
        user=net.founder,
        start=NOV + timedelta(days=1),
        minutes=90,
    )
    result = runner.invoke(invoices_app, ["close", "--period", "2026-11"])
    assert result.exit_code == 0, result.output
    session.rollback()  # a fresh snapshot: see what the app committed
    return session.exec(select(Invoice).where(Invoice.number == "INV-2026-11-TINY")).one()


def test_close_sends_the_invoice_to_stripe(session, net, stripe_fake) -> None:
    invoice = _close_and_send(session, net)
    assert invoice.status.value == "sent" and invoice.stripe_invoice_id
    customers = stripe_fake.posts("/v1/customers")
    assert len(customers) == 1
    assert customers[0].idempotency_key == f"labshare-customer-{net.small.id}"
    assert customers[0].params["metadata[labshare_institution_code]"] == "TINY"
    assert customers[0].authorization == "Bearer sk_test_labshare"
    created = stripe_fake.posts("/v1/invoices")[0]
    assert created.idempotency_key == f"labshare-invoice-{invoice.id}"
    assert created.params["currency"] == "cny" and created.params["customer"] == "cus_1"
    assert created.params["metadata[labshare_invoice_id]"] == str(invoice.id)
    assert created.params["metadata[labshare_invoice_number]"] == "INV-2026-11-TINY"
    items = stripe_fake.posts("/v1/invoiceitems")
    assert [(c.params["amount"], c.params["description"][:2]) for c in items] == [
        ("20000", "1."),
        ("30000", "2."),
        ("-12500", "In"),
    ]  # lines, then the 25 % voucher
    assert all(c.params["invoice"] == invoice.stripe_invoice_id for c in items)
    assert [c.idempotency_key for c in items][:1] == [f"labshare-charge-{1}"]
    assert items[-1].idempotency_key.startswith(f"labshare-voucher-{invoice.id}-")
    finalize = stripe_fake.posts(f"/v1/invoices/{invoice.stripe_invoice_id}/finalize")
    assert len(finalize) == 1 and finalize[0].idempotency_key == f"labshare-finalize-{invoice.id}"
    assert invoice.total == 37500
    # Sending again sends nothing: the invoice is on Stripe already.
    before = len(stripe_fake.calls)
    assert runner.invoke(invoices_app, ["send", "--period", "2026-11"]).exit_code == 0
    assert len(stripe_fake.calls) == before


def test_webhooks_verified_stored_once_and_posted(client, session, net, stripe_fake) -> None:
    invoice = _close_and_send(session, net)
    paid = _event(
        "evt_1",
        "invoice.paid",
        {
            "id": invoice.stripe_invoice_id,
            "object": "invoice",
            "amount_paid": invoice.total,
            "currency": "cny",
            "metadata": {"labshare_invoice_id": str(invoice.id)},
        },
    )
    assert _post(client, paid, None).status_code == 400
    assert _post(client, paid, sign(paid, "whsec_wrong")).status_code == 400
    stale = sign(paid, SECRET, timestamp=int(time.time()) - 3600)
    assert _post(client, paid, stale).status_code == 400
    assert _post(client, paid + " ", sign(paid, SECRET)).status_code == 400  # body changed
    r = _post(client, paid, sign(paid, SECRET))
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    assert _post(client, paid, sign(paid, SECRET)).json()["duplicate"] is True
    session.rollback()  # a fresh snapshot: see what the app committed
    invoice = session.get(Invoice, invoice.id)
    assert invoice.status.value == "paid" and invoice.amount_paid == 37500
    with session_scope() as s:
        accounts = {code: balance for code, _k, balance in balances(s)}
        assert accounts["cash:stripe:cny"] == 37500
        assert accounts["payer_receivable:TINY:cny"] == 0
        assert len(s.exec(select(StripeEvent)).all()) == 1
    # A different event for the same payment posts nothing more.
    again = _event(
        "evt_2",
        "invoice.paid",
        {"id": invoice.stripe_invoice_id, "currency": "cny", "amount_paid": invoice.total},
    )
    assert _post(client, again, sign(again, SECRET)).status_code == 200
    with session_scope() as s:
        assert {c: b for c, _k, b in balances(s)}["cash:stripe:cny"] == 37500
    failed = _event("evt_3", "invoice.payment_failed", {"id": "in_unknown", "currency": "cny"})
    r = _post(client, failed, sign(failed, SECRET))
    assert r.status_code == 200 and "no invoice of ours" in r.json()["result"]


def _state(session, invoice_id: int) -> tuple[str, int, int]:
    """The invoice's status and amount paid, and the Stripe cash account's balance."""
    session.rollback()
    invoice = session.get(Invoice, invoice_id)
    with session_scope() as s:
        cash = {c: b for c, _k, b in balances(s)}.get("cash:stripe:cny", 0)
    return invoice.status.value, invoice.amount_paid, cash


def test_a_signed_event_cannot_pay_an_invoice_it_does_not_match(
    client, session, net, stripe_fake
) -> None:
    """A correctly signed invoice.paid for another Stripe invoice, with our invoice's id in
    its metadata and amount_paid 1, marked a 10,648.99 CNY invoice paid; a negative amount
    grew the receivable; no amount at all paid it in full. Each is now recorded, answered
    200 (so Stripe stops retrying) and changes nothing."""
    invoice = _close_and_send(session, net)
    ours = invoice.stripe_invoice_id
    hostile = [
        {"id": "in_someone_else", "object": "invoice", "amount_paid": 1, "currency": "cny",
         "metadata": {"labshare_invoice_id": str(invoice.id)}},
        {"id": ours, "object": "invoice", "amount_paid": -500, "currency": "cny"},
        {"id": ours, "object": "invoice", "currency": "cny"},
        {"id": ours, "object": "invoice", "amount_paid": invoice.total + 1, "currency": "cny"},
        {"id": ours, "object": "invoice", "amount_paid": invoice.total, "currency": "usd"},
        {"id": ours, "object": "invoice", "amount_paid": True, "currency": "cny"},
        {"id": ours, "object": "invoice", "amount_paid": invoice.total, "currency": "cny",
         "amount_due": 1},
        {"id": ours, "object": "charge", "amount_paid": invoice.total, "currency": "cny"},
    ]  # fmt: skip
    for n, obj in enumerate(hostile):
        event = _event(f"evt_bad_{n}", "invoice.paid", obj)
        answer = _post(client, event, sign(event, SECRET))
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"].startswith("refused"), (obj, answer.json())
    as_list = json.dumps({"id": "evt_list", "object": "event", "type": "invoice.paid",
                          "created": int(time.time()), "data": {"object": [ours]}})  # fmt: skip
    assert _post(client, as_list, sign(as_list, SECRET)).status_code == 200
    connected = json.loads(_event("evt_acct", "invoice.paid", {
        "id": ours, "object": "invoice", "amount_paid": invoice.total, "currency": "cny"}))  # fmt: skip
    connected["account"] = "acct_123"
    connected_text = json.dumps(connected)
    answer = _post(client, connected_text, sign(connected_text, SECRET))
    assert answer.status_code == 200 and "connected account" in answer.json()["result"]
    assert _state(session, invoice.id) == ("sent", 0, 0)
    with session_scope() as s:
        assert len(s.exec(select(StripeEvent)).all()) == len(hostile) + 2


def test_a_partial_payment_is_recorded_as_partial(client, session, net, stripe_fake) -> None:
    invoice = _close_and_send(session, net)
    half = invoice.total // 2
    for n, paid in enumerate((half, half, invoice.total)):
        event = _event(f"evt_part_{n}", "invoice.paid", {
            "id": invoice.stripe_invoice_id, "object": "invoice", "amount_paid": paid,
            "currency": "cny"})  # fmt: skip
        assert _post(client, event, sign(event, SECRET)).status_code == 200
        if n == 0:
            assert _state(session, invoice.id) == ("partially_paid", half, half)
    # The repeated running total posted nothing; the full one posted the rest.
    assert _state(session, invoice.id) == ("paid", invoice.total, invoice.total)


def test_payment_failed_marks_the_invoice(client, session, net, stripe_fake) -> None:
    invoice = _close_and_send(session, net)
    failed = _event(
        "evt_9", "invoice.payment_failed", {"id": invoice.stripe_invoice_id, "currency": "cny"}
    )
    assert _post(client, failed, sign(failed, SECRET)).status_code == 200
    session.rollback()  # a fresh snapshot: see what the app committed
    invoice = session.get(Invoice, invoice.id)
    assert (invoice.status.value, invoice.payment_failures) == ("payment_failed", 1)


def test_cli_reasons(session, net, engine) -> None:
    bad = runner.invoke(invoices_app, ["run", "--period", "2026-13"])
    assert bad.exit_code == 1 and "YYYY-MM" in bad.output
    book(session, instrument=net.instrument, user=net.researcher)
    ok = runner.invoke(invoices_app, ["run", "--period", "2026-11"])
    assert ok.exit_code == 0 and "1 new charges" in ok.output, ok.output
    assert runner.invoke(invoices_app, ["close", "--period", "2026-11"]).exit_code == 0
    closed = runner.invoke(invoices_app, ["run", "--period", "2026-11"])
    assert closed.exit_code == 1 and "closed" in closed.output
