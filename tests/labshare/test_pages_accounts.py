"""Project accounts and service requests through the pages, on both databases: a PI opens
an account and adds a member through the forms; the member books on it from the
instrument page (and, past the budget, is refused with no booking left behind); the PI
approves a service request's charge on the accounts page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from billing.projects.models import AccountLink, LinkStatus
from billing.rates import rate_card_create
from billing.schemas import RateCardIn
from billing.services.models import RequestStatus, ServiceRequest
from booking.models import Booking
from core.db import session_scope
from core.models import Role
from instruments.models import PayerClass
from labshare.app import create_app
from tests.factories import auth, create_institution, create_instrument, create_lab, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def test_a_pi_member_and_the_booking_form(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="XRD")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    university = create_institution(session, code="UNIV-P")
    pi, member = (create_user(session, institution=university) for _ in range(2))
    with session_scope() as s:
        rate_card_create(s, user=None, data=RateCardIn(
            instrument_id=instrument.id, payer_class=PayerClass.academic, amount=10000,
            effective_from=datetime.now(UTC) - timedelta(days=30)))  # fmt: skip

    page_sign_in(client, pi.email)
    token = csrf_of(client, "/me/accounts")
    today = datetime.now(UTC).date()
    form = {"name": "Grant 7", "grant_number": "G-7", "budget": "300.00",
            "valid_from": str(today), "valid_until": str(today + timedelta(days=90)),
            "approval": "above", "approval_threshold": "1000.00", "csrf_token": token}  # fmt: skip
    bad = client.post("/me/accounts", data={**form, "valid_until": str(today - timedelta(days=1))})
    assert bad.status_code == 422 and "valid_until" in bad.text
    opened = client.post("/me/accounts", data=form, follow_redirects=False)
    assert opened.status_code == 303, opened.text
    url = opened.headers["location"].split("?")[0]
    added = client.post(f"{url}/members", data={"email": member.email, "csrf_token": token})
    assert added.status_code == 200 and member.email in added.text

    other = TestClient(create_app())
    page_sign_in(other, member.email)
    token = csrf_of(other, f"/instruments/{instrument.id}")
    assert "Grant 7" in other.get(f"/instruments/{instrument.id}").text
    account_id = url.rsplit("/", 1)[1]
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=2, minute=0, second=0,
                                                             microsecond=0)  # fmt: skip
    local = start.astimezone(ZoneInfo("Asia/Shanghai"))

    def book(hours: int):
        return other.post(f"/instruments/{instrument.id}/book", data={
            "start": f"{local:%Y-%m-%dT%H:%M}",
            "end": f"{local + timedelta(hours=hours):%Y-%m-%dT%H:%M}",
            "account_id": account_id, "csrf_token": token})  # fmt: skip

    over = book(4)  # 400.00 on a budget of 300.00
    assert over.status_code == 409 and "budget" in over.text
    session.rollback()
    assert session.exec(select(Booking)).all() == []  # nothing left behind
    made = book(2)
    assert made.status_code == 201, made.text[-1500:]
    session.rollback()
    link = session.exec(select(AccountLink)).one()
    assert link.status == LinkStatus.approved and link.estimate == 20000
    assert "Booking" in client.get(url).text and "200.00" in client.get(url).text

    # A service request on the account above the PI's threshold waits for the PI's page.
    lab_side = auth(manager)
    service = client.post("/api/v1/services", headers=lab_side, json={
        "instrument_id": instrument.id, "name": "Powder XRD", "prices": {"academic": 60000}})  # fmt: skip
    client.patch(url.replace("/accounts", "/api/v1/accounts"), headers=auth(pi),
                 json={"budget": 1_000_000})  # fmt: skip
    token = csrf_of(other, f"/services/{service.json()['id']}")
    sent = other.post(f"/services/{service.json()['id']}/request", data={
        "units": "2", "account_id": account_id, "csrf_token": token})  # fmt: skip
    assert sent.status_code == 200 and "Sent: the lab" in sent.text, sent.text[-3000:]
    session.rollback()
    request = session.exec(select(ServiceRequest)).one()
    client.post(f"/api/v1/service-requests/{request.id}/quote", json={}, headers=lab_side)
    accepted = other.post(f"/requests/{request.id}", data={"action": "accept", "csrf_token": token})
    assert accepted.status_code == 200 and "waiting for the PI" in accepted.text
    token = csrf_of(client, "/me/accounts")
    page = client.get("/me/accounts").text
    assert f"SR-{request.id}" in page and "Waiting for your approval" in page
    session.rollback()
    pending = session.exec(
        select(AccountLink).where(AccountLink.status == LinkStatus.pending)
    ).one()
    approved = client.post(f"/me/accounts/approvals/{pending.id}",
                           data={"approve": "yes", "csrf_token": token})  # fmt: skip
    assert approved.status_code == 200
    session.rollback()
    session.expire_all()
    assert session.get(ServiceRequest, request.id).status == RequestStatus.accepted  # type: ignore[union-attr]
    # The PI sees the request charged to the account; a stranger does not.
    assert client.get(f"/requests/{request.id}").status_code == 200
    stranger = TestClient(create_app())
    page_sign_in(stranger, create_user(session).email)
    assert stranger.get(f"/requests/{request.id}").status_code == 404
    assert stranger.get(url).status_code == 404
