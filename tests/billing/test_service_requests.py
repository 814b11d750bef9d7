"""Service requests (送样检测) through the API, on both databases: a lab publishes a service
with its form, a small company requests it, the lab quotes (the voucher's share shown),
the company accepts, the lab receives the samples, holds the instrument for the run,
uploads the result and completes; the company downloads and rates; the charge run charges
the quote and the voucher pays its share of the invoice. Refusals say why."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from billing.invoices import invoice_run
from billing.models import Charge, Invoice
from billing.services.models import RequestStatus, ServiceRequest
from billing.vouchers import ProgrammeIn, programme_create
from booking.models import Booking, BookingStatus
from booking.notifications.models import Notification
from core.audit import AuditEntry
from core.db import session_scope
from core.periods import period_of
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.models import Institution
from tests.factories import auth, create_user, issue_voucher

API = "/api/v1"
FORM = [
    {"name": "matrix", "label": "Sample matrix", "type": "text", "required": True},
    {"name": "concentration", "label": "Concentration (mg/L)", "type": "number"},
    {"name": "mode", "type": "choice", "choices": ["positive", "negative"], "required": True},
    {"name": "sheet", "label": "Sample sheet", "type": "file", "required": True},
]


@pytest.fixture
def files_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LABSHARE_FILES_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("LABSHARE_MAX_FILE_BYTES", "4096")
    get_settings.cache_clear()
    yield tmp_path / "files"
    get_settings.cache_clear()


def _service(client: TestClient, net, **change: object) -> dict:
    body = {"instrument_id": net.instrument.id, "name": "LC-MS/MS targeted quantitation",
            "description": "Per sample; report in 10 working days.", "unit": "sample",
            "prices": {"academic": 30000, "company": 60000}, "turnaround_days": 10,
            "sample_types": "serum, plasma", "form": FORM, **change}  # fmt: skip
    r = client.post(f"{API}/services", json=body, headers=auth(net.manager))
    assert r.status_code == 201, r.text
    return r.json()


def _voucher_for(session: Session, net) -> None:
    with session_scope() as s:
        programme = programme_create(s, data=ProgrammeIn(
            code=f"IV{uuid.uuid4().hex[:6]}", name="Innovation vouchers", currency="cny",
            budget=10_000_000, coverage_bp=5000, company_yearly_cap=1_000_000,
            starts_on=date(utcnow().year, 1, 1), ends_on=date(utcnow().year + 1, 12, 31),
        ))  # fmt: skip
        programme_id = programme.id or 0
    small = session.get(Institution, net.small.id)
    issue_voucher(session, programme_id=programme_id, institution=small, amount=500_000)


def _upload(client: TestClient, who: dict, request_id: int, content: bytes, name: str,
            field: str = ""):  # fmt: skip
    return client.post(
        f"{API}/service-requests/{request_id}/files",
        files={"file": (name, content, "text/csv")},
        data={"field": field} if field else {},
        headers=who,
    )


def test_a_service_from_request_to_result_and_invoice(
    client: TestClient, session: Session, net, files_dir
) -> None:
    _voucher_for(session, net)
    service = _service(client, net)
    founder, lab = auth(net.founder), auth(net.manager)

    est = client.get(f"{API}/services/{service['id']}/estimate?units=4", headers=founder)
    assert est.status_code == 200, est.text
    # A small company without its own price pays the company price; the voucher pays half.
    assert est.json()["payer_class"] == "small_company"
    assert est.json()["total"] == 240000 and est.json()["voucher_pays"] == 120000

    def ask(**answers: object):
        return client.post(f"{API}/service-requests", headers=founder, json={
            "service_id": service["id"], "units": 4, "answers": answers, "note": "urgent"})  # fmt: skip

    r = ask(mode="positive")
    assert r.status_code == 422 and "answers.matrix" in r.text
    r = ask(matrix="serum", mode="positive", concentration="lots")
    assert r.status_code == 422 and "answers.concentration" in r.text
    r = ask(matrix="serum", mode="neutral")
    assert r.status_code == 422 and "answers.mode" in r.text
    r = ask(matrix="serum", mode="positive", colour="red")
    assert r.status_code == 422 and "answers.colour" in r.text
    r = ask(matrix="serum", mode="positive", concentration="2.5")
    assert r.status_code == 201, r.text
    draft = r.json()
    assert draft["status"] == "draft" and draft["estimate_total"] == 240000
    assert draft["answers"] == {"matrix": "serum", "mode": "positive", "concentration": 2.5}
    rid = draft["id"]
    url = f"{API}/service-requests/{rid}"

    r = client.post(f"{url}/submit", headers=founder)
    assert r.status_code == 422 and "answers.sheet" in r.text
    # Nobody else sees it, or may touch it.
    stranger = auth(net.engineer)
    assert client.get(url, headers=stranger).status_code == 404
    assert _upload(client, stranger, rid, b"x", "a.csv").status_code == 404
    assert _upload(client, founder, rid, b"x", "a.csv", field="nope").status_code == 422
    assert _upload(client, founder, rid, b"x" * 5000, "big.csv", field="sheet").status_code == 413
    assert list(files_dir.rglob("*")) == [] or all(p.is_dir() for p in files_dir.rglob("*"))
    sheet = _upload(client, founder, rid, b"id,matrix\n1,serum\n", "../../etc/sheet.csv", "sheet")
    assert sheet.status_code == 201, sheet.text
    assert sheet.json()["name"] == "sheet.csv"
    r = client.post(f"{url}/submit", headers=founder)
    assert r.status_code == 200 and r.json()["status"] == "submitted"

    # Only the lab quotes; the requester cannot accept before it does.
    assert client.post(f"{url}/quote", json={}, headers=founder).status_code == 403
    r = client.post(f"{url}/accept", headers=founder)
    assert r.status_code == 409 and r.json()["status"] == "submitted"
    r = client.post(f"{url}/quote", headers=lab, json={"lines": [
        {"description": "LC-MS/MS, 4 samples", "quantity": 4, "unit_amount": 60000},
        {"description": "Method set-up", "quantity": 1, "unit_amount": 20000}]})  # fmt: skip
    assert r.status_code == 200, r.text
    quoted = r.json()
    assert quoted["status"] == "quoted" and quoted["quote_total"] == 260000
    assert quoted["quote_voucher"] == 130000
    r = client.post(f"{url}/accept", headers=founder)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    r = client.post(f"{url}/accept", headers=founder)
    assert r.status_code == 409 and r.json()["status"] == "accepted"

    assert client.post(f"{url}/receive", headers=founder).status_code == 403
    assert client.post(f"{url}/receive", headers=lab).json()["status"] == "received"
    start = (utcnow() + timedelta(days=2)).replace(hour=2, minute=0, second=0, microsecond=0)
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()}
    r = client.post(f"{url}/schedule", json=window, headers=lab)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "in_progress" and run["booking_id"]
    # The run holds the instrument: a booking over it is refused with alternatives.
    clash = client.post(f"{API}/bookings", headers=auth(net.researcher), json={
        "instrument_id": net.instrument.id, **window})  # fmt: skip
    assert clash.status_code == 409 and clash.json()["conflicts"], clash.text

    r = client.post(f"{url}/complete", headers=lab)
    assert r.status_code == 409 and "results" in r.text
    assert _upload(client, founder, rid, b"x", "mine.csv").status_code == 409
    result = _upload(client, lab, rid, b"sample,ng/mL\n1,4.2\n", "results.csv")
    assert result.status_code == 201 and result.json()["kind"] == "result"
    r = client.post(f"{url}/complete", headers=lab)
    assert r.status_code == 200 and r.json()["status"] == "completed"

    got = client.get(result.json()["url"], headers=founder)
    assert got.status_code == 200 and got.content == b"sample,ng/mL\n1,4.2\n"
    assert "attachment" in got.headers["content-disposition"]
    assert client.get(result.json()["url"], headers=stranger).status_code == 404
    other = client.post(f"{API}/service-requests", headers=auth(net.researcher), json={
        "service_id": service["id"], "units": 1,
        "answers": {"matrix": "x", "mode": "negative"}}).json()  # fmt: skip
    wrong_request = f"{API}/service-requests/{other['id']}/files/{result.json()['id']}"
    assert client.get(wrong_request, headers=auth(net.researcher)).status_code == 404

    assert client.post(f"{url}/rating", json={"rating": 6}, headers=founder).status_code == 422
    r = client.post(f"{url}/rating", json={"rating": 5, "comment": "fast"}, headers=founder)
    assert r.status_code == 200 and r.json()["rating"] == 5

    session.rollback()
    hold = session.get(Booking, run["booking_id"])
    assert hold is not None and hold.status == BookingStatus.confirmed
    assert hold.user_id == net.manager.id
    told = set(session.exec(select(Notification.kind).where(
        Notification.user_id == net.founder.id)).all())  # fmt: skip
    assert {"service_request_quoted", "service_request_completed"} <= told
    steps = session.exec(select(AuditEntry.action).where(
        AuditEntry.entity == "service_request", AuditEntry.entity_id == str(rid))).all()  # fmt: skip
    assert "service_request.accepted" in steps and "service_request.completed" in steps

    period = period_of(utcnow())
    with session_scope() as s:
        invoice_run(s, period=period)
    session.rollback()
    charge = session.exec(select(Charge).where(Charge.kind == "service")).one()
    assert charge.source_id == rid and charge.amount == 260000 and charge.quantity == 4
    assert charge.voucher_eligible and charge.payer_institution_id == net.small.id
    invoice = session.get(Invoice, charge.invoice_id)
    assert invoice is not None and invoice.voucher_total == 130000
    # The run's hold is the lab's time: never charged as a booking of its operator.
    assert session.exec(select(Charge).where(Charge.booking_id == hold.id,
                                             Charge.kind != "service")).all() == []  # fmt: skip
    # Charged once: a second run adds nothing.
    with session_scope() as s:
        invoice_run(s, period=period)
    session.rollback()
    assert len(session.exec(select(Charge).where(Charge.kind == "service")).all()) == 1


def test_transitions_refused_from_the_wrong_status_or_by_the_wrong_side(
    client: TestClient, session: Session, net, files_dir
) -> None:
    service = _service(client, net, form=[])
    me, lab = auth(net.researcher), auth(net.manager)
    r = client.post(f"{API}/service-requests", headers=me,
                    json={"service_id": service["id"], "units": 2, "submit": True})  # fmt: skip
    assert r.status_code == 201 and r.json()["status"] == "submitted"
    url = f"{API}/service-requests/{r.json()['id']}"
    for action in ("receive", "complete"):
        r = client.post(f"{url}/{action}", headers=lab)
        assert r.status_code == 409 and r.json()["status"] == "submitted", action
    assert client.post(f"{url}/reject", json={"reason": " "}, headers=lab).status_code == 422
    r = client.post(f"{url}/quote", json={}, headers=lab)
    assert r.json()["quote_total"] == 60000  # the academic price for the units asked
    r = client.post(f"{url}/cancel", json={"reason": "too dear"}, headers=me)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.post(f"{url}/accept", headers=me)
    assert r.status_code == 409 and r.json()["status"] == "cancelled"

    # Withdrawn services take no new requests; the queue is the lab's only.
    client.patch(f"{API}/services/{service['id']}", json={"active": False}, headers=lab)
    r = client.post(f"{API}/service-requests", headers=me, json={"service_id": service["id"]})
    assert r.status_code == 404
    assert client.get(f"{API}/service-requests?lab={net.lab.code}", headers=me).status_code == 403
    queue = client.get(f"{API}/service-requests?lab={net.lab.code}", headers=lab)
    assert queue.status_code == 200 and [q["status"] for q in queue.json()] == ["cancelled"]

    # A lab's form is checked: names, types, choices.
    bad = client.post(f"{API}/services", headers=lab, json={
        "instrument_id": net.instrument.id, "name": "X", "prices": {"academic": 1},
        "form": [{"name": "a", "type": "choice"}]})  # fmt: skip
    assert bad.status_code == 422 and "choices" in bad.text
    other_lab = create_user(session)
    r = client.post(f"{API}/services", headers=auth(other_lab), json={
        "instrument_id": net.instrument.id, "name": "X", "prices": {"academic": 1}})  # fmt: skip
    assert r.status_code == 403
    session.rollback()
    assert session.exec(select(ServiceRequest.status)).all() == [RequestStatus.cancelled]


def test_a_moved_run_hands_the_time_it_left_to_those_waiting(
    client: TestClient, session: Session, net, files_dir
) -> None:
    """Moving a run cancels its earlier hold; that time goes to the waitlist, as a
    cancellation's does, after the new hold is placed (which keeps what the lab asked)."""
    service = _service(client, net, form=[])
    me, lab = auth(net.researcher), auth(net.manager)
    r = client.post(f"{API}/service-requests", headers=auth(net.founder),
                    json={"service_id": service["id"], "units": 1, "submit": True})  # fmt: skip
    url = f"{API}/service-requests/{r.json()['id']}"
    client.post(f"{url}/quote", json={}, headers=lab)
    assert client.post(f"{url}/accept", headers=auth(net.founder)).status_code == 200
    assert client.post(f"{url}/receive", headers=lab).status_code == 200

    def window(days: int, hours: int = 0) -> dict[str, str]:
        start = (utcnow() + timedelta(days=days)).replace(
            hour=2 + hours, minute=0, second=0, microsecond=0
        )
        return {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()}

    def wait_for(times: dict[str, str]) -> int:
        r = client.post(f"{API}/waitlist", headers=me,
                        json={"instrument_id": net.instrument.id, **times})  # fmt: skip
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    first, second = window(2), window(3)
    assert client.post(f"{url}/schedule", json=first, headers=lab).status_code == 200
    waiting = wait_for(first)
    moved = client.post(f"{url}/schedule", json=second, headers=lab)
    assert moved.status_code == 200, moved.text

    entries = {e["id"]: e for e in client.get(f"{API}/waitlist", headers=me).json()}
    assert entries[waiting]["status"] == "booked"
    session.rollback()  # a fresh look at what the requests committed
    mine = session.get(Booking, entries[waiting]["booking_id"])
    assert mine is not None and mine.user_id == net.researcher.id
    assert mine.status == BookingStatus.confirmed
    told = session.exec(select(Notification.kind).where(
        Notification.user_id == net.researcher.id)).all()  # fmt: skip
    assert "waitlist_booked" in told

    # Moved an hour later: the new hold keeps its time, and a wait for the old three hours
    # (two of them still held) goes on waiting.
    waiting_again = wait_for(second)
    later = client.post(f"{url}/schedule", json=window(3, hours=1), headers=lab)
    assert later.status_code == 200, later.text
    session.rollback()
    hold = session.get(Booking, later.json()["booking_id"])
    assert hold is not None and hold.status == BookingStatus.confirmed
    entries = {e["id"]: e for e in client.get(f"{API}/waitlist", headers=me).json()}
    assert entries[waiting_again]["status"] == "waiting"
