"""The facility's pages as people use them: a tablet checks a booking in with its PIN and
reports a problem (English and Chinese), a lab schedules training and records who passed,
closes an incident, registers a webhook endpoint; a researcher sets their reminders."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from booking.attendance import booking_pin
from booking.models import Booking, Incident, TrainingSession
from core.models import Role, User
from instruments.models import Qualification
from labshare.app import create_app
from tests.factories import create_instrument, create_lab, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def _tablet(lang: str) -> TestClient:
    return TestClient(create_app(), headers={"Accept-Language": lang})


def test_a_tablet_checks_in_with_the_pin_and_reports_a_problem(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Orbitrap")
    ana = create_user(session)
    now = datetime.now(UTC)
    booking = Booking(instrument_id=instrument.id, user_id=ana.id,
                      start_at=now - timedelta(minutes=5), end_at=now + timedelta(hours=1))  # fmt: skip
    session.add(booking)
    session.commit()
    url = f"/instruments/{instrument.id}/kiosk"
    with _tablet("zh-CN") as tablet:
        page = tablet.get(url)
        assert page.status_code == 200 and "尚未签到" in page.text
        token = csrf_of(tablet, url)
        wrong = tablet.post(
            f"{url}/check-in",
            data={
                "pin": "999999" if booking_pin(booking.id) != "999999" else "999998",
                "csrf_token": token,
            },
        )
        assert wrong.status_code == 409 and "该 PIN 不对应" in wrong.text
        done = tablet.post(
            f"{url}/check-in", data={"pin": booking_pin(booking.id), "csrf_token": token}
        )
        assert done.status_code == 200 and "已签到" in done.text and "使用中" in done.text
        report = tablet.post(
            f"{url}/report",
            data={"kind": "dirty", "description": "样品残留", "csrf_token": token},
        )
        assert report.status_code == 200 and "实验室已收到通知" in report.text
    with _tablet("en") as tablet:
        token = csrf_of(tablet, url)
        out = tablet.post(
            f"{url}/check-out", data={"pin": booking_pin(booking.id), "csrf_token": token}
        )
        assert out.status_code == 200 and "Checked out" in out.text
        missing = tablet.post(
            f"{url}/report", data={"kind": "melted", "description": "x", "csrf_token": token}
        )
        assert missing.status_code == 422
    qr = client.get(f"{url}.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert session.exec(select(Incident)).one().description == "样品残留"
    # The booker sees the PIN on their bookings.
    later = Booking(instrument_id=instrument.id, user_id=ana.id,
                    start_at=now + timedelta(days=2), end_at=now + timedelta(days=2, hours=1))  # fmt: skip
    session.add(later)
    session.commit()
    page_sign_in(client, ana.email)
    assert booking_pin(later.id) in client.get("/me/bookings").text


def test_a_lab_trains_and_a_researcher_sees_the_grant(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Cryo-EM", qualification_required=True)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    ana = create_user(session)
    page_sign_in(client, ana.email)
    token = csrf_of(client, f"/instruments/{instrument.id}")
    assert "Ask for training" in client.get(f"/instruments/{instrument.id}").text
    asked = client.post("/me/training/requests",
                        data={"instrument_id": instrument.id, "note": "PhD", "csrf_token": token})  # fmt: skip
    assert asked.status_code == 200 and "the lab will offer you a session" in asked.text

    manager_client = TestClient(create_app())
    page_sign_in(manager_client, manager.email)
    token = csrf_of(manager_client, "/lab/training")
    assert "PhD" in manager_client.get("/lab/training").text
    start = (datetime.now(UTC) + timedelta(days=3)).replace(
        hour=2, minute=0, second=0, microsecond=0
    )
    local = start.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    made = manager_client.post("/lab/training/sessions", data={
        "title": "Cryo basics", "instrument_id": str(instrument.id),
        "start": f"{local:%Y-%m-%dT%H:%M}", "end": f"{local + timedelta(hours=2):%Y-%m-%dT%H:%M}",
        "capacity": "2", "level": "independent", "valid_days": "180", "csrf_token": token,
    })  # fmt: skip
    assert made.status_code == 200 and "Cryo basics" in made.text, made.text[-2000:]
    bad = manager_client.post("/lab/training/sessions", data={
        "title": "Backwards", "instrument_id": str(instrument.id),
        "start": f"{local:%Y-%m-%dT%H:%M}", "end": f"{local - timedelta(hours=1):%Y-%m-%dT%H:%M}",
        "csrf_token": token,
    })  # fmt: skip
    assert bad.status_code == 422 and "end: must be after start" in bad.text
    training = session.exec(select(TrainingSession)).one()
    seat = manager_client.post(f"/lab/training/sessions/{training.id}/seats",
                               data={"email": ana.email, "csrf_token": token})  # fmt: skip
    assert seat.status_code == 200
    # The session is over: attendance, ticked passed.
    session.rollback()  # a fresh snapshot: SQLite will not write from a stale one
    training = session.get(TrainingSession, training.id)
    training.start_at -= timedelta(days=4)
    training.end_at -= timedelta(days=4)
    session.add(training)
    session.commit()
    page = manager_client.get("/lab/training").text
    assert f'action="/lab/training/sessions/{training.id}/attendance"' in page
    saved = manager_client.post(f"/lab/training/sessions/{training.id}/attendance", data={
        "seat": str(ana.id), "attended": str(ana.id), "passed": str(ana.id), "csrf_token": token,
    })  # fmt: skip
    assert saved.status_code == 200 and "passing grants the qualification" in saved.text
    session.rollback()
    grant = session.exec(select(Qualification).where(Qualification.user_id == ana.id)).one()
    assert grant.level.value == "independent" and grant.expires_at is not None
    mine = client.get("/me/training").text
    assert "Cryo-EM" in mine and "Independent" in mine


def test_incidents_webhooks_and_reminders_pages(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    session.add(Incident(instrument_id=instrument.id, kind="broken", description="no vacuum"))
    session.commit()
    page_sign_in(client, manager.email)
    token = csrf_of(client, "/lab/incidents")
    assert "no vacuum" in client.get("/lab/incidents").text
    incident = session.exec(select(Incident)).one()
    closed = client.post(f"/lab/incidents/{incident.id}/close",
                         data={"note": "pump replaced", "csrf_token": token})  # fmt: skip
    assert closed.status_code == 200 and "pump replaced" in closed.text

    private = client.post("/lab/webhooks", data={"url": "http://10.0.0.5/hook", "events": "booking.*",
                                                 "csrf_token": token})  # fmt: skip
    assert private.status_code == 422 and "private or local address" in private.text
    added = client.post("/lab/webhooks", data={"url": "http://1.1.1.1/hook", "events": "booking.*",
                                               "csrf_token": token})  # fmt: skip
    assert added.status_code == 200 and "whsec_" in added.text

    saved = client.post("/me/reminders", data={"minutes": "120, 30", "language": "zh",
                                               "csrf_token": token})  # fmt: skip
    assert saved.status_code == 200
    session.rollback()  # a fresh snapshot (SQLite's reader kept the one before the post)
    person = session.get(User, manager.id)
    assert (person.reminder_minutes, person.language) == ("120,30", "zh")
    refused = client.post("/me/reminders", data={"minutes": "soon", "csrf_token": token})
    assert refused.status_code == 422 and "not a number of minutes" in refused.text
    assert re.search(r'value="120,30"', client.get("/me/notifications").text)


def test_a_seat_is_given_up_on_the_page_and_given_back_by_the_lab(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Confocal")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    ana = create_user(session)
    ana.name = "Ana Lima"
    session.add(ana)
    session.commit()
    page_sign_in(client, ana.email)
    token = csrf_of(client, f"/instruments/{instrument.id}")
    client.post("/me/training/requests", data={"instrument_id": instrument.id, "csrf_token": token})
    lab_client = TestClient(create_app())
    page_sign_in(lab_client, manager.email)
    lab_token = csrf_of(lab_client, "/lab/training")
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=2, minute=0, second=0)
    local = start.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    made = lab_client.post("/lab/training/sessions", data={
        "title": "Confocal basics", "instrument_id": str(instrument.id),
        "start": f"{local:%Y-%m-%dT%H:%M}", "end": f"{local + timedelta(hours=2):%Y-%m-%dT%H:%M}",
        "capacity": "1", "level": "independent", "csrf_token": lab_token,
    })  # fmt: skip
    assert made.status_code == 200, made.text[-2000:]
    training = session.exec(select(TrainingSession)).one()
    assert client.post(f"/me/training/sessions/{training.id}/seat",
                       data={"csrf_token": token}).status_code == 200  # fmt: skip

    page = client.get("/me/training").text
    give_up = f'action="/me/training/sessions/{training.id}/seat/give-up"'
    assert give_up in page and "Give up my seat" in page and "data-confirm" in page
    gone = client.post(f"/me/training/sessions/{training.id}/seat/give-up",
                       data={"csrf_token": token})  # fmt: skip
    assert gone.status_code == 200 and "Seat given up: someone else can take it." in gone.text
    assert give_up not in gone.text and "Take a seat" in gone.text
    again = client.post(f"/me/training/sessions/{training.id}/seat/give-up",
                        data={"csrf_token": token})  # fmt: skip
    assert again.status_code == 404 and "you have no seat" in again.text

    lab_client.post(f"/lab/training/sessions/{training.id}/seats",
                    data={"email": ana.email, "csrf_token": lab_token})  # fmt: skip
    page = lab_client.get("/lab/training").text
    [seat_id] = re.findall(rf"/lab/training/sessions/{training.id}/seats/(\d+)/give-back", page)
    assert 'aria-label="Give back the seat of Ana Lima"' in page
    freed = lab_client.post(f"/lab/training/sessions/{training.id}/seats/{seat_id}/give-back",
                            data={"csrf_token": lab_token})  # fmt: skip
    assert freed.status_code == 200 and "The seat is free again" in freed.text
    assert "No seat taken yet." in freed.text
    zh = client.get("/me/training", headers={"Accept-Language": "zh-CN"}).text
    assert "报名" in zh
