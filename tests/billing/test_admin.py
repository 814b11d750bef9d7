"""Programmes, payments, ledger balances and the rate and voucher commands."""

from __future__ import annotations

from typer.testing import CliRunner

from billing.cli import rates_app, vouchers_app
from billing.invoices import invoice_close
from core.db import session_scope
from tests.billing.helpers import book
from tests.factories import auth

runner = CliRunner()
PROGRAMME = {
    "code": "IV-2026",
    "name": "Innovation vouchers",
    "budget": 10**8,
    "coverage_bp": 5000,
    "company_yearly_cap": 10**6,
    "starts_on": "2026-01-01",
    "ends_on": "2026-12-31",
}


def test_voucher_programmes(client, net) -> None:
    url = "/api/v1/voucher-programmes"
    assert client.post(url, json=PROGRAMME, headers=auth(net.manager)).status_code == 403
    for bad in ({"coverage_bp": 0}, {"coverage_bp": 10001}, {"budget": -1}, {"currency": "abc"}):
        r = client.post(url, json={**PROGRAMME, **bad}, headers=auth(net.admin))
        assert r.status_code == 422, bad
    r = client.post(url, json={**PROGRAMME, "ends_on": "2025-01-01"}, headers=auth(net.admin))
    assert r.status_code == 422
    r = client.post(url, json=PROGRAMME, headers=auth(net.admin))
    assert r.status_code == 201 and r.json()["remaining"] == 10**8
    assert client.post(url, json=PROGRAMME, headers=auth(net.admin)).status_code == 409
    assert [p["code"] for p in client.get(url, headers=auth(net.founder)).json()] == ["IV-2026"]


def test_bank_payment_and_ledger_balances(client, session, net) -> None:
    book(session, instrument=net.instrument, user=net.researcher)
    with session_scope() as s:
        invoice_close(s, period="2026-11")
    invoice = client.get("/api/v1/invoices?period=2026-11", headers=auth(net.admin)).json()[0]
    url = f"/api/v1/invoices/{invoice['id']}/payments"
    assert client.post(url, headers=auth(net.academic_admin)).status_code == 403
    r = client.post(url, headers=auth(net.admin))
    assert r.status_code == 200 and r.json()["status"] == "paid"
    assert client.get("/api/v1/ledger/balances", headers=auth(net.researcher)).status_code == 403
    ledger = client.get("/api/v1/ledger/balances", headers=auth(net.admin)).json()
    assert ledger["totals"] == {"cny": 0}
    balances = {a["code"]: a["balance"] for a in ledger["accounts"]}
    assert balances == {
        "cash:bank:cny": 60000,
        "payer_receivable:UNIV-B:cny": 0,
        "provider_revenue:UNIV-A:cny": -60000,
    }


def test_rate_card_end_and_assisted_rules(client, session, net) -> None:
    h = auth(net.manager)
    body = {
        "instrument_id": net.instrument.id,
        "payer_class": "company",
        "amount": 30000,
        "effective_from": "2026-01-01T00:00:00Z",
    }
    card = client.post("/api/v1/rate-cards", json=body, headers=h).json()
    past = {"effective_to": "2026-02-01T00:00:00Z"}
    assert (
        client.post(f"/api/v1/rate-cards/{card['id']}/end", json=past, headers=h).status_code == 409
    )
    future = {"effective_to": "2099-01-01T00:00:00+08:00"}
    r = client.post(f"/api/v1/rate-cards/{card['id']}/end", json=future, headers=h)
    assert r.status_code == 200 and r.json()["effective_to"] == "2098-12-31T16:00:00Z"
    b = book(session, instrument=net.instrument, user=net.researcher)
    url = f"/api/v1/billing/bookings/{b.id}/assisted"
    assert client.put(url, json={"assisted": True}, headers=auth(net.researcher)).status_code == 403
    assert client.put(url, json={"assisted": True}, headers=h).status_code == 200
    with session_scope() as s:
        invoice_close(s, period="2026-11")
    assert client.put(url, json={"assisted": False}, headers=h).status_code == 409
    # A card starting inside the closed month would rewrite history.
    late = {**body, "payer_class": "internal", "effective_from": "2026-11-15T00:00:00+08:00"}
    assert client.post("/api/v1/rate-cards", json=late, headers=h).status_code == 409


def test_rate_and_voucher_commands(session, net) -> None:
    ok = runner.invoke(
        rates_app,
        [
            "set",
            "--instrument",
            "MS-1",
            "--payer-class",
            "company",
            "--amount",
            "25000",
            "--effective-from",
            "2026-01-01T00:00:00Z",
        ],
    )
    assert ok.exit_code == 0 and "250.00 CNY/hour" in ok.output, ok.output
    for bad in (["--amount", "-5"], ["--currency", "xyz"], ["--payer-class", "friends"]):
        args = ["set", "--instrument", "MS-1", "--payer-class", "academic", "--amount", "1", *bad]
        r = runner.invoke(rates_app, args)
        assert r.exit_code == 1 and "error" in r.output, (bad, r.output)
    overlap = runner.invoke(
        rates_app,
        [
            "set",
            "--instrument",
            "MS-1",
            "--payer-class",
            "company",
            "--amount",
            "1",
            "--effective-from",
            "2025-06-01T00:00:00Z",
        ],
    )
    assert overlap.exit_code == 1 and "overlaps" in overlap.output
    assert runner.invoke(rates_app, ["policy", "--lab", "LAB-A", "--basis", "often"]).exit_code == 1
    assert runner.invoke(rates_app, ["policy", "--lab", "LAB-A", "--basis", "used"]).exit_code == 0
    made = runner.invoke(
        vouchers_app,
        [
            "create",
            "--code",
            "V1",
            "--budget",
            "1000",
            "--coverage-bp",
            "4000",
            "--company-yearly-cap",
            "500",
            "--starts-on",
            "2026-01-01",
            "--ends-on",
            "2026-12-31",
        ],
    )
    assert made.exit_code == 0, made.output
    bad = runner.invoke(
        vouchers_app,
        [
            "create",
            "--code",
            "V2",
            "--budget",
            "1000",
            "--coverage-bp",
            "20000",
            "--company-yearly-cap",
            "500",
            "--starts-on",
            "2026-01-01",
            "--ends-on",
            "2026-12-31",
        ],
    )
    assert bad.exit_code == 1 and "coverage_bp" in bad.output
    assert "V1" in runner.invoke(vouchers_app, ["list"]).output
