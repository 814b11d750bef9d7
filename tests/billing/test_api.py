"""Billing over HTTP: rate cards and policies with validation, invoices for whom may see them."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from billing.invoices import invoice_run
from core.db import session_scope
from core.models import Role
from instruments.models import Institution
from tests.billing.helpers import NOV, book, create_user
from tests.factories import auth, create_lab


def _card(net, **fields):
    body = {
        "instrument_id": net.instrument.id,
        "payer_class": "academic",
        "amount": 15000,
        "effective_from": "2026-09-01T00:00:00+08:00",
    }
    body.update(fields)
    return body


def test_rate_cards_are_validated_and_kept_in_history(client, session, net) -> None:
    h = auth(net.manager)
    bad = [
        {"amount": -1},
        {"amount": 10**12},
        {"currency": "xyz"},
        {"rounding_minutes": 0},
        {"effective_from": "2026-09-01T00:00:00"},  # no offset
        {"category": "ms-lc"},  # both an instrument and a category
    ]
    for fields in bad:
        r = client.post("/api/v1/rate-cards", json=_card(net, **fields), headers=h)
        assert r.status_code == 422, (fields, r.text)
    r = client.post("/api/v1/rate-cards", json=_card(net, currency="USD"), headers=h)
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["currency"], first["effective_to"]) == ("usd", None)
    # A bounded card inside the open one overlaps: refused with the card it hits.
    r = client.post(
        "/api/v1/rate-cards",
        json=_card(
            net,
            effective_from="2026-10-01T00:00:00+08:00",
            effective_to="2026-10-15T00:00:00+08:00",
        ),
        headers=h,
    )
    assert r.status_code == 409 and r.json()["conflicting_id"] == first["id"]
    # An open-ended card from a later date supersedes: the old one ends where it starts.
    r = client.post(
        "/api/v1/rate-cards",
        json=_card(net, amount=18000, effective_from="2026-10-01T00:00:00Z"),
        headers=h,
    )
    assert r.status_code == 201, r.text
    cards = client.get(f"/api/v1/rate-cards?instrument_id={net.instrument.id}").json()
    assert [(c["amount"], c["effective_to"]) for c in cards] == [
        (15000, "2026-10-01T00:00:00Z"),
        (18000, None),
    ]
    # The catalog shows the card in force now.
    rates = client.get(f"/api/v1/instruments/{net.instrument.id}").json()["rates"]
    assert {"payer_class": "academic", "unit": "hour", "amount": 18000, "currency": "cny"} in rates
    # Another lab's manager may not touch it.
    stranger = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    r = client.post(
        "/api/v1/rate-cards", json=_card(net, payer_class="company"), headers=auth(stranger)
    )
    assert r.status_code == 403


def test_charging_policy(client, net) -> None:
    url = f"/api/v1/labs/{net.lab.code}/charging-policy"
    assert client.get(url).json()["basis"] == "booked"
    h = auth(net.manager)
    assert client.put(url, json={"basis": "sometimes"}, headers=h).status_code == 422
    assert client.put(url, json={"no_show_fee": -5}, headers=h).status_code == 422
    assert client.put(url, json={"currency": "zzz"}, headers=h).status_code == 422
    assert client.put(url, json={"basis": "used"}, headers=auth(net.researcher)).status_code == 403
    r = client.put(url, json={"basis": "larger", "no_show_fee": 5000}, headers=h)
    assert r.status_code == 200 and r.json()["basis"] == "larger"
    assert client.get("/api/v1/labs/NOPE/charging-policy").status_code == 422


def test_invoices_for_payers_and_admins(client, session, net) -> None:
    r = client.post(
        "/api/v1/rate-cards",
        json=_card(net, payer_class="company", amount=40000),
        headers=auth(net.manager),
    )
    assert r.status_code == 201
    book(session, instrument=net.instrument, user=net.researcher, minutes=60)
    book(session, instrument=net.instrument, user=net.researcher2, start=NOV + timedelta(days=1))
    book(session, instrument=net.instrument, user=net.engineer, start=NOV + timedelta(days=2))
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    assert client.get("/api/v1/invoices?period=2026-13", headers=auth(net.admin)).status_code == 422
    assert client.get("/api/v1/invoices?month=2026-11", headers=auth(net.admin)).status_code == 422
    assert client.get("/api/v1/invoices?period=2026-11").status_code == 401
    everything = client.get("/api/v1/invoices?period=2026-11", headers=auth(net.admin)).json()
    assert [i["number"] for i in everything] == ["INV-2026-11-BIGCO", "INV-2026-11-UNIV-B"]
    totals = client.get("/api/v1/invoices?period=2026-11&lines=false", headers=auth(net.admin))
    assert [(i["line_count"], i["lines"]) for i in totals.json()] == [(1, []), (2, [])]
    mine = client.get("/api/v1/invoices?period=2026-11", headers=auth(net.academic_admin)).json()
    assert len(mine) == 1 and mine[0]["lines_scope"] == "all"
    invoice = mine[0]
    assert [line["line_no"] for line in invoice["lines"]] == [1, 2]
    assert invoice["subtotal"] == 30000 + 60000 and invoice["total"] == 90000
    assert invoice["lines"][0]["description"].startswith(
        "Booking, Orbitrap (MS-1), 2026-11-10 09:00-10:00"
    )
    own = client.get("/api/v1/invoices?period=2026-11", headers=auth(net.researcher)).json()
    assert [line["user"] for line in own[0]["lines"]] == [net.researcher.email]
    assert own[0]["lines_scope"] == "own"
    # Trust boundaries: a researcher sees their own lines and their own subtotal, never the
    # institution's totals; one with no line on an invoice does not see it at all.
    assert own[0]["own_subtotal"] == 30000 and own[0]["line_count"] == 1
    assert all(own[0][k] is None for k in ("subtotal", "voucher_total", "total", "amount_paid"))
    r = client.get(f"/api/v1/invoices/{invoice['id']}", headers=auth(net.researcher))
    assert r.status_code == 200 and r.json()["total"] is None
    stranger = create_user(
        session, institution=session.get(Institution, net.researcher.institution_id)
    )
    session.commit()
    r = client.get(f"/api/v1/invoices/{invoice['id']}", headers=auth(stranger))
    assert r.status_code == 403
    assert client.get("/api/v1/invoices?period=2026-11", headers=auth(stranger)).json() == []
    own_csv = client.get(f"/api/v1/invoices/{invoice['id']}.csv", headers=auth(net.researcher))
    last = list(csv.reader(io.StringIO(own_csv.text)))[-1]
    assert last[2] == "Your subtotal" and last[13] == "30000"
    r = client.get(f"/api/v1/invoices/{invoice['id']}", headers=auth(net.engineer))
    assert r.status_code == 403
    assert client.get("/api/v1/invoices/999999", headers=auth(net.admin)).status_code == 404
    r = client.get(f"/api/v1/invoices/{invoice['id']}.csv", headers=auth(net.academic_admin))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["invoice", "line", "description"]
    assert rows[-1][2] == "Total due" and rows[-1][13] == "90000"
    page = client.get(f"/billing/invoices/{invoice['id']}", headers=auth(net.academic_admin))
    assert page.status_code == 200 and "INV-2026-11-UNIV-B" in page.text
    assert "Total due" in page.text and "900.00 CNY" in page.text
    assert ">1 h<" in page.text  # a line's quantity as people say it, not "60 minute"


def test_lab_sees_who_used_what(client, session, net) -> None:
    book(session, instrument=net.instrument, user=net.researcher, minutes=60)
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    url = f"/api/v1/labs/{net.lab.code}/charges?period=2026-11"
    assert client.get(url, headers=auth(net.researcher)).status_code == 403
    assert (
        client.get(url.replace("2026-11", "11-2026"), headers=auth(net.manager)).status_code == 422
    )
    lines = client.get(url, headers=auth(net.manager)).json()
    assert [(c["payer"], c["payer_class"], c["invoice"], c["amount"]) for c in lines] == [
        ("UNIV-B", "academic", "INV-2026-11-UNIV-B", 30000)
    ]


def test_category_default_prices_the_lab_instruments(client, session, net) -> None:
    h = auth(net.manager)
    body = {
        "category": "ms-lc",
        "payer_class": "small_company",
        "amount": 9000,
        "effective_from": "2026-01-01T00:00:00Z",
    }
    r = client.post("/api/v1/rate-cards", json=body, headers=h)
    assert r.status_code == 201 and r.json()["lab"] == "LAB-A", r.text
    assert (
        client.post("/api/v1/rate-cards", json={**body, "category": "nope"}, headers=h).status_code
        == 422
    )
    rates = client.get(f"/api/v1/instruments/{net.instrument.id}").json()["rates"]
    assert {
        "payer_class": "small_company",
        "unit": "hour",
        "amount": 9000,
        "currency": "cny",
    } in rates
    book(session, instrument=net.instrument, user=net.founder, minutes=60)
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    lines = client.get(f"/api/v1/labs/{net.lab.code}/charges?period=2026-11", headers=h).json()
    assert [(c["payer"], c["amount"]) for c in lines] == [("TINY", 9000)]
