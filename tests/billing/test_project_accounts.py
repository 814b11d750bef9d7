"""Project accounts through the API, on both databases: a PI opens an account with a
budget and an approval rule and adds a member; the member charges a booking and a
service request to it; the PI approves what is above the threshold (or declines with a
reason); the account warns at 80% and refuses past 100% with the figures unless the PI
allows overspending; the month's charges go on the account's own invoice, which its PI
sees whole and its member sees their lines of."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from billing.invoices import invoice_run
from billing.models import Charge, Invoice
from billing.projects.models import AccountLink, LinkKind, LinkStatus
from billing.rates import rate_card_create
from billing.schemas import RateCardIn
from booking.notifications.models import Notification
from core.db import session_scope
from core.timeutil import utcnow
from instruments.models import PayerClass
from tests.billing.helpers import NOV, book
from tests.factories import auth

API = "/api/v1"


@pytest.fixture
def files_dir(tmp_path, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("LABSHARE_FILES_DIR", str(tmp_path / "files"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _account(client: TestClient, pi: dict, **change: object) -> dict:
    today = utcnow().date()
    body = {"name": "NSFC 22175123", "grant_number": "22175123", "cost_centre": "CC-881",
            "budget": 60000, "valid_from": str(today - timedelta(days=30)),
            "valid_until": str(today + timedelta(days=365)), "approval": "above",
            "approval_threshold": 30000, **change}  # fmt: skip
    r = client.post(f"{API}/accounts", json=body, headers=pi)
    assert r.status_code == 201, r.text
    return r.json()


def _quoted(client: TestClient, net, who: dict, account_id: int, units: int) -> str:
    service = client.get(f"{API}/services?instrument_id={net.instrument.id}").json()
    if not service:
        made = client.post(f"{API}/services", headers=auth(net.manager), json={
            "instrument_id": net.instrument.id, "name": "XRD", "prices": {"academic": 20000}})  # fmt: skip
        service = [made.json()]
    r = client.post(f"{API}/service-requests", headers=who, json={
        "service_id": service[0]["id"], "units": units, "submit": True, "account_id": account_id})  # fmt: skip
    assert r.status_code == 201, r.text
    url = f"{API}/service-requests/{r.json()['id']}"
    assert client.post(f"{url}/quote", json={}, headers=auth(net.manager)).status_code == 200
    return url


def test_an_account_from_approval_to_its_own_invoice(
    client: TestClient, session: Session, net, files_dir
) -> None:
    with session_scope() as s:
        rate_card_create(s, user=None, data=RateCardIn(
            instrument_id=net.instrument.id, payer_class=PayerClass.academic, amount=6000,
            effective_from=NOV - timedelta(days=60)))  # fmt: skip
    pi, member = auth(net.researcher), auth(net.researcher2)
    account = _account(client, pi)
    aid = account["id"]
    assert client.post(f"{API}/accounts/{aid}/members", json={"email": net.engineer.email},
                       headers=pi).status_code == 422  # another institution's  # fmt: skip
    assert client.post(f"{API}/accounts/{aid}/members", json={"email": net.researcher.email},
                       headers=member).status_code == 404  # not theirs to see  # fmt: skip
    r = client.post(f"{API}/accounts/{aid}/members", json={"email": net.researcher2.email},
                    headers=pi)  # fmt: skip
    assert r.status_code == 201 and r.json()["members"] == [net.researcher2.id]
    assert client.get(f"{API}/accounts/{aid}", headers=auth(net.engineer)).status_code == 404
    admin_view = client.get(f"{API}/accounts", headers=auth(net.academic_admin)).json()
    assert [a["id"] for a in admin_view] == [aid]

    # A booking of two hours (12,000) is below the threshold: approved at once.
    start = (utcnow() + timedelta(days=3)).replace(hour=2, minute=0, second=0, microsecond=0)
    booked = client.post(f"{API}/bookings", headers=member, json={
        "instrument_id": net.instrument.id, "start": start.isoformat(),
        "end": (start + timedelta(hours=2)).isoformat()})  # fmt: skip
    assert booked.status_code == 201, booked.text
    link = client.post(f"{API}/bookings/{booked.json()['id']}/account", json={"account_id": aid},
                       headers=member)  # fmt: skip
    assert link.status_code == 200, link.text
    assert link.json()["status"] == "approved" and link.json()["estimate"] == 12000
    assert client.post(f"{API}/bookings/{booked.json()['id']}/account", json={"account_id": aid},
                       headers=pi).status_code == 403  # not the PI's booking  # fmt: skip

    # A quote of 40,000 is above it: the member's acceptance waits for the PI.
    url = _quoted(client, net, member, aid, 2)
    r = client.post(f"{url}/accept", headers=member)
    assert r.status_code == 200 and r.json()["status"] == "quoted"
    assert r.json()["account_approval"] == "pending"
    again = client.post(f"{url}/accept", headers=member)
    assert again.status_code == 409 and "PI" in again.text
    waiting = client.get(f"{API}/accounts/approvals", headers=pi).json()
    assert [w["kind"] for w in waiting] == ["service_request"]
    assert client.post(f"{API}/accounts/approvals/{waiting[0]['id']}", json={"approve": True},
                       headers=member).status_code == 403  # fmt: skip
    r = client.post(f"{API}/accounts/approvals/{waiting[0]['id']}", json={"approve": True},
                    headers=pi)  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert client.get(url, headers=member).json()["status"] == "accepted"
    assert client.get(url, headers=pi).status_code == 200  # the PI sees what is charged

    # 52,000 of 60,000: the PI is warned (once), and the next 20,000 is refused.
    position = client.get(f"{API}/accounts/{aid}", headers=pi).json()["position"]
    assert position == {"budget": 60000, "spent": 0, "committed": 52000, "remaining": 8000,
                        "used_share": 0.8667, "alert": True}  # fmt: skip
    url2 = _quoted(client, net, member, aid, 1)
    r = client.post(f"{url2}/accept", headers=member)
    assert r.status_code == 409, r.text
    assert r.json()["budget"] == 60000 and r.json()["committed"] == 52000
    assert r.json()["amount"] == 20000 and "budget" in r.json()["detail"]
    # The PI allows overspending: accepted (the PI's own approval is not asked of the PI).
    client.patch(f"{API}/accounts/{aid}", json={"allow_overspend": True, "approval": "never"},
                 headers=pi)  # fmt: skip
    assert client.post(f"{url2}/accept", headers=member).json()["status"] == "accepted"
    # Declined: the request stays quoted, off the account.
    client.patch(f"{API}/accounts/{aid}", json={"approval": "always"}, headers=pi)
    url3 = _quoted(client, net, member, aid, 1)
    client.post(f"{url3}/accept", headers=member)
    pending = client.get(f"{API}/accounts/approvals", headers=pi).json()[0]
    assert client.post(f"{API}/accounts/approvals/{pending['id']}", json={"approve": False},
                       headers=pi).status_code == 422  # a reason is needed  # fmt: skip
    client.post(f"{API}/accounts/approvals/{pending['id']}",
                json={"approve": False, "reason": "not this grant"}, headers=pi)  # fmt: skip
    declined = client.get(url3, headers=member).json()
    assert declined["status"] == "quoted" and declined["account_id"] is None

    session.rollback()
    alerts = session.exec(select(Notification.subject).where(
        Notification.user_id == net.researcher.id, Notification.kind == "account_budget_alert")).all()  # fmt: skip
    assert sorted(alerts) == [
        "NSFC 22175123 has used 80%",
        "NSFC 22175123 has used its whole budget",
    ]

    # November: a completed booking charged to the account goes on the account's invoice;
    # one that is not goes on the institution's.
    on_account = book(session, instrument=net.instrument, user=net.researcher2)
    off_account = book(session, instrument=net.instrument, user=net.researcher2,
                       start=NOV + timedelta(days=1))  # fmt: skip
    session.add(AccountLink(account_id=aid, kind=LinkKind.booking, source_id=on_account.id or 0,
                            chosen_by_id=net.researcher2.id or 0, estimate=12000,
                            status=LinkStatus.approved))  # fmt: skip
    session.commit()
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    session.rollback()
    charges = {c.booking_id: c for c in session.exec(select(Charge)).all()}
    assert charges[on_account.id].account_id == aid
    assert charges[off_account.id].account_id is None
    ours = session.get(Invoice, charges[on_account.id].invoice_id)
    theirs = session.get(Invoice, charges[off_account.id].invoice_id)
    assert ours is not None and theirs is not None and ours.id != theirs.id
    assert ours.account_id == aid and ours.payer_institution_id == net.academic.id
    assert ours.number.endswith(f"-A{aid}") and ours.subtotal == 12000
    seen = {v["id"]: v for v in client.get(f"{API}/invoices?period=2026-11", headers=pi).json()}
    assert seen[ours.id]["lines_scope"] == "all" and seen[ours.id]["account_id"] == aid
    assert theirs.id not in seen  # the PI caused no line of the institution's invoice
    spent = client.get(f"{API}/accounts/{aid}", headers=pi).json()["position"]["spent"]
    assert spent == 12000


def test_a_booking_waits_for_the_pi_and_a_closed_account_is_refused(
    client: TestClient, session: Session, net
) -> None:
    pi, member = auth(net.researcher), auth(net.researcher2)
    account = _account(client, pi, approval="always", budget=1_000_000)
    aid = account["id"]
    client.post(f"{API}/accounts/{aid}/members", json={"email": net.researcher2.email}, headers=pi)
    start = (utcnow() + timedelta(days=4)).replace(hour=2, minute=0, second=0, microsecond=0)
    booked = client.post(f"{API}/bookings", headers=member, json={
        "instrument_id": net.instrument.id, "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat()}).json()  # fmt: skip
    link = client.post(f"{API}/bookings/{booked['id']}/account", json={"account_id": aid},
                       headers=member).json()  # fmt: skip
    assert link["status"] == "pending"
    r = client.post(f"{API}/accounts/approvals/{link['id']}",
                    json={"approve": False, "reason": "use the teaching budget"}, headers=pi)  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "declined"
    again = client.post(f"{API}/accounts/approvals/{link['id']}", json={"approve": True},
                        headers=pi)  # fmt: skip
    assert again.status_code == 409 and again.json()["status"] == "declined"
    assert client.get(f"{API}/accounts/{aid}", headers=pi).json()["position"]["committed"] == 0
    session.rollback()
    told = session.exec(select(Notification.body).where(
        Notification.user_id == net.researcher2.id, Notification.kind == "account_declined")).all()  # fmt: skip
    assert told == ["use the teaching budget"]

    # Closed, or outside its dates: a 409 that says so, with the dates.
    client.patch(f"{API}/accounts/{aid}", json={"valid_until": str(utcnow().date() - timedelta(days=1)),
                                                "valid_from": str(utcnow().date() - timedelta(days=9))},
                 headers=pi)  # fmt: skip
    r = client.post(f"{API}/bookings/{booked['id']}/account", json={"account_id": aid},
                    headers=member)  # fmt: skip
    assert r.status_code == 409 and "valid from" in r.json()["detail"] and r.json()["valid_until"]
    stranger = client.post(f"{API}/bookings/{booked['id']}/account", json={"account_id": aid},
                           headers=auth(net.engineer))  # fmt: skip
    assert stranger.status_code == 403
