"""Assisted use, on both databases: a researcher asks for an operator when booking, the lab
accepts naming one of its people, and the charge carries the assisted surcharge; a
declined request leaves a plain booking; refusals say why."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from billing.invoices import invoice_run
from billing.models import Charge
from billing.rates import rate_card_create
from billing.schemas import RateCardIn
from booking.models import Assistance, Booking, BookingStatus
from booking.notifications.models import Notification
from core.db import session_scope
from core.models import Role
from instruments.models import PayerClass
from tests.billing.helpers import NOV
from tests.factories import auth, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def _ask(client: TestClient, net, who: dict, days: int, **extra: object):
    start = NOV + timedelta(days=days)
    return client.post(
        "/api/v1/bookings",
        json={"instrument_id": net.instrument.id, "start": start.isoformat(),
              "end": (start + timedelta(hours=2)).isoformat(), **extra},
        headers=who,
    )  # fmt: skip


def test_an_operator_is_asked_for_accepted_and_charged(
    client: TestClient, session: Session, net, monkeypatch
) -> None:
    # Book in November as if it were before it (the rules' lead time and horizon).
    import booking.service as service

    real_now = service.utcnow
    monkeypatch.setattr(service, "utcnow", lambda: NOV - timedelta(days=1))
    with session_scope() as s:
        rate_card_create(s, user=None, data=RateCardIn(
            instrument_id=net.instrument.id, payer_class=PayerClass.academic, amount=6000,
            assisted_surcharge=3000, effective_from=NOV - timedelta(days=60),
        ))  # fmt: skip
    operator = create_user(session, role=Role.lab_manager, lab=net.lab)
    me = auth(net.researcher)
    asked = _ask(client, net, me, 0, assisted=True)
    assert asked.status_code == 201, asked.text
    assert asked.json()["assistance"] == "requested"
    plain = _ask(client, net, me, 1)
    assert plain.json()["assistance"] is None
    series = _ask(client, net, me, 2, assisted=True, recurrence="FREQ=WEEKLY;COUNT=2")
    assert series.status_code == 422 and "single bookings" in series.text
    monkeypatch.setattr(service, "utcnow", real_now)

    url = f"/api/v1/bookings/{asked.json()['id']}/assistance"
    assert client.post(url, json={"accept": True, "operator_email": operator.email},
                       headers=me).status_code == 403  # fmt: skip
    outsider = create_user(session)
    r = client.post(url, json={"accept": True, "operator_email": outsider.email},
                    headers=auth(net.manager))  # fmt: skip
    assert r.status_code == 422 and "lab's people" in r.text
    r = client.post(url, json={"accept": True, "operator_email": operator.email},
                    headers=auth(net.manager))  # fmt: skip
    assert r.status_code == 200 and r.json()["operator_id"] == operator.id
    none_asked = f"/api/v1/bookings/{plain.json()['id']}/assistance"
    assert client.post(none_asked, json={"accept": False, "reason": "x"},
                       headers=auth(net.manager)).status_code == 409  # fmt: skip
    session.rollback()
    told = session.exec(
        select(Notification.kind).where(Notification.user_id == net.researcher.id)
    ).all()
    assert "assistance_accepted" in told

    for booking_id in (asked.json()["id"], plain.json()["id"]):
        row = session.get(Booking, booking_id)
        row.status = BookingStatus.completed
        session.add(row)
    session.commit()
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    session.rollback()
    charges = {c.source_id: c for c in session.exec(select(Charge)).all()}
    # 2 h at 60.00/h, plus the assisted surcharge 30.00/h on the assisted one.
    assert charges[asked.json()["id"]].surcharge_amount == 6000
    assert charges[plain.json()["id"]].surcharge_amount == 0


def test_the_lab_declines_on_its_page(
    client: TestClient, session: Session, net, monkeypatch
) -> None:
    import booking.service as service

    monkeypatch.setattr(service, "utcnow", lambda: NOV - timedelta(days=1))
    asked = _ask(client, net, auth(net.researcher), 3, assisted=True)
    monkeypatch.undo()
    booking_id = asked.json()["id"]
    # The booking is in the past of this test's clock: the page lists bookings ahead, so
    # move it ahead.
    row = session.get(Booking, booking_id)
    row.start_at, row.end_at = row.start_at + timedelta(days=400), row.end_at + timedelta(days=400)
    session.add(row)
    session.commit()
    page_sign_in(client, net.manager.email)
    page = client.get("/lab/assistance")
    assert page.status_code == 200 and f'action="/lab/assistance/{booking_id}"' in page.text
    token = csrf_of(client, "/lab/assistance")
    empty = client.post(
        f"/lab/assistance/{booking_id}", data={"accept": "no", "reason": "", "csrf_token": token}
    )
    assert empty.status_code == 422
    done = client.post(f"/lab/assistance/{booking_id}",
                       data={"accept": "no", "reason": "no operator that week", "csrf_token": token})  # fmt: skip
    assert done.status_code == 200 and done.url.path == "/lab/assistance", done.text
    session.rollback()
    session.expire_all()  # this session wrote the row last: it keeps what it wrote
    assert session.get(Booking, booking_id).assistance == Assistance.declined
