"""A facility's daily work, on both databases: training from request to qualification,
its expiry stopping new bookings, the out-of-hours level, the safety induction first, a
full session's 409; incidents to a blackout and closed; reminders each added once in the
person's language, and sent once by two senders at once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

import billing.reminders  # noqa: F401  (registers the voucher pass, as the CLI does)
from booking.models import Booking, BookingStatus, SafetyInduction, TrainingSession
from booking.notifications.models import Notification
from booking.reminders import reminders_due
from booking.training import Attendance, training_attendance
from core.db import session_scope
from core.models import Role, User
from instruments.models import Qualification
from tests.booking.test_notifications import Inbox, smtp  # noqa: F401  (the fixture)
from tests.factories import auth, create_instrument, create_lab, create_user

LABSHARE = Path(sys.executable).with_name("labshare")


def _monday(weeks: int = 2) -> datetime:
    """A Monday 02:00 UTC (10:00 in Shanghai, within staffed hours) some weeks ahead."""
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    return today + timedelta(days=7 * weeks - today.weekday())


def _book(client: TestClient, who: dict, instrument_id: int, start: datetime, hours: int = 1):
    return client.post(
        "/api/v1/bookings",
        json={"instrument_id": instrument_id, "start": start.isoformat(),
              "end": (start + timedelta(hours=hours)).isoformat()},
        headers=who,
    )  # fmt: skip


def test_training_to_qualification_to_expiry(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, qualification_required=True)
    manager_user = create_user(session, role=Role.lab_manager, lab=lab)
    manager = auth(manager_user)
    ana, ben = create_user(session), create_user(session)
    monday = _monday()

    assert _book(client, auth(ana), instrument.id, monday).status_code == 403
    asked = client.post(
        "/api/v1/training/requests", json={"instrument_id": instrument.id, "note": "for my PhD"},
        headers=auth(ana),
    )  # fmt: skip
    assert asked.status_code == 201, asked.text
    again = client.post("/api/v1/training/requests", json={"instrument_id": instrument.id},
                        headers=auth(ana))  # fmt: skip
    assert again.status_code == 409
    queue = client.get("/api/v1/training/requests", headers=manager).json()
    assert [r["status"] for r in queue] == ["open"]

    slot = monday + timedelta(days=1)
    scheduled = client.post(
        "/api/v1/training/sessions",
        json={"title": "Basics", "instrument_id": instrument.id, "start": slot.isoformat(),
              "end": (slot + timedelta(hours=2)).isoformat(), "capacity": 1,
              "level": "independent", "valid_days": 30},
        headers=manager,
    )  # fmt: skip
    assert scheduled.status_code == 201, scheduled.text
    training_id = scheduled.json()["id"]
    # The session holds the instrument's time like a booking.
    hold = session.get(Booking, scheduled.json()["booking_id"])
    assert hold is not None and hold.status == BookingStatus.confirmed
    clash = client.post(
        "/api/v1/training/sessions",
        json={"title": "Twice", "instrument_id": instrument.id, "start": slot.isoformat(),
              "end": (slot + timedelta(hours=1)).isoformat()},
        headers=manager,
    )  # fmt: skip
    assert clash.status_code == 409

    seat = client.post(f"/api/v1/training/sessions/{training_id}/seats", json={}, headers=auth(ana))
    assert seat.status_code == 201, seat.text
    full = client.post(f"/api/v1/training/sessions/{training_id}/seats", json={}, headers=auth(ben))
    assert full.status_code == 409 and "full" in full.json()["detail"]
    early = client.post(
        f"/api/v1/training/sessions/{training_id}/attendance",
        json={"records": [{"user_id": ana.id, "attended": True, "passed": True}]},
        headers=manager,
    )
    assert early.status_code == 409  # not before it starts

    with session_scope() as s:
        actor = s.get(User, manager_user.id)
        training_attendance(
            s, user=actor, session_id=training_id,
            records=[Attendance(ana.id, attended=True, passed=True)],
            now=slot + timedelta(hours=2),
        )  # fmt: skip
    mine = client.get("/api/v1/me/qualifications", headers=auth(ana)).json()
    assert [(q["instrument_id"], q["level"], q["expired"]) for q in mine] == [
        (instrument.id, "independent", False)
    ]
    assert client.get("/api/v1/training/requests", headers=auth(ana)).json()[0]["status"] == "done"
    # Independent: within staffed hours only.
    assert _book(client, auth(ana), instrument.id, monday + timedelta(days=2)).status_code == 201
    night = monday + timedelta(days=2, hours=12)  # 22:00 in Shanghai
    late = _book(client, auth(ana), instrument.id, night)
    assert late.status_code == 403 and "out-of-hours" in late.json()["detail"]

    # Expired: no new bookings, and the reason says so.
    session.rollback()  # a fresh snapshot
    grant = session.exec(select(Qualification).where(Qualification.user_id == ana.id)).one()
    grant.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    session.add(grant)
    session.commit()
    expired = _book(client, auth(ana), instrument.id, monday + timedelta(days=3))
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]
    # A refresher grant renews the same row.
    r = client.post(
        f"/api/v1/instruments/{instrument.id}/qualifications",
        json={"email": ana.email, "level": "out_of_hours",
              "expires_at": (datetime.now(UTC) + timedelta(days=365)).isoformat()},
        headers=manager,
    )  # fmt: skip
    assert r.status_code in (200, 201) and r.json()["id"] == grant.id
    assert _book(client, auth(ana), instrument.id, night).status_code == 201


def test_the_safety_induction_comes_first(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(
        session, lab=lab, qualification_required=True, induction_required=True
    )
    manager_user = create_user(session, role=Role.lab_manager, lab=lab)
    ana = create_user(session)
    slot = _monday() + timedelta(days=1)
    created = client.post(
        "/api/v1/training/sessions",
        json={"title": "Hands on", "instrument_id": instrument.id, "start": slot.isoformat(),
              "end": (slot + timedelta(hours=1)).isoformat()},
        headers=auth(manager_user),
    ).json()  # fmt: skip
    assert client.post(
        f"/api/v1/training/sessions/{created['id']}/seats", json={"person_email": ana.email},
        headers=auth(manager_user),
    ).status_code == 201  # fmt: skip
    with session_scope() as s:
        actor = s.get(User, manager_user.id)
        with pytest.raises(Exception, match="safety induction first"):
            training_attendance(
                s, user=actor, session_id=created["id"],
                records=[Attendance(ana.id, True, True)], now=slot + timedelta(hours=1),
            )  # fmt: skip
    session.add(SafetyInduction(lab_id=lab.id, user_id=ana.id))
    session.commit()
    with session_scope() as s:
        actor = s.get(User, manager_user.id)
        training_attendance(
            s, user=actor, session_id=created["id"],
            records=[Attendance(ana.id, True, True)], now=slot + timedelta(hours=1),
        )  # fmt: skip
    assert session.exec(select(Qualification).where(Qualification.user_id == ana.id)).one()


def test_an_incident_becomes_a_blackout_and_is_closed(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    ana, ben = create_user(session), create_user(session)
    monday = _monday()
    booked = _book(client, auth(ben), instrument.id, monday)
    assert booked.status_code == 201
    url = f"/api/v1/instruments/{instrument.id}/incidents"
    assert client.post(url, json={"kind": "melted", "description": "x"}).status_code == 422
    report = client.post(
        url, json={"kind": "broken", "description": "vacuum pump is loud"}, headers=auth(ana)
    )
    assert report.status_code == 201, report.text
    incident_id = report.json()["id"]
    # From the kiosk, without an account, a few an hour.
    kiosk = [client.post(url, json={"kind": "dirty", "description": "spill on the bench"})
             for _ in range(6)]  # fmt: skip
    assert [r.status_code for r in kiosk] == [201] * 5 + [429]
    queue = client.get("/api/v1/incidents?status=open", headers=manager).json()
    assert len(queue) == 6
    assert client.get("/api/v1/incidents", headers=auth(ana)).json()[0]["id"] == incident_id

    blocked = client.post(
        f"/api/v1/incidents/{incident_id}/blackout",
        json={"start": monday.isoformat(), "end": (monday + timedelta(days=1)).isoformat()},
        headers=manager,
    )
    assert blocked.status_code == 201, blocked.text
    assert [d["id"] for d in blocked.json()["displaced"]] == [booked.json()["id"]]
    assert client.post(f"/api/v1/incidents/{incident_id}/close", json={"note": "pump replaced"},
                       headers=auth(ana)).status_code == 403  # fmt: skip
    closed = client.post(
        f"/api/v1/incidents/{incident_id}/close", json={"note": "pump replaced"}, headers=manager
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    again = client.post(
        f"/api/v1/incidents/{incident_id}/close", json={"note": "again"}, headers=manager
    )
    assert again.status_code == 409
    told = session.exec(select(Notification.kind).where(Notification.user_id == ana.id)).all()
    assert "incident_closed" in told


def test_reminders_once_in_the_persons_language(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Orbitrap")
    ana = create_user(session)
    r = client.put("/api/v1/me/reminders", json={"minutes_before": [60, 1440, 60], "language": "zh"},
                   headers=auth(ana))  # fmt: skip
    assert r.status_code == 200 and r.json() == {"minutes_before": [1440, 60], "language": "zh"}
    assert client.put("/api/v1/me/reminders", json={"minutes_before": [1]},
                      headers=auth(ana)).status_code == 422  # fmt: skip
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=50)
    booking = Booking(instrument_id=instrument.id, user_id=ana.id, start_at=start,
                      end_at=start + timedelta(hours=1))  # fmt: skip
    session.add(booking)
    session.commit()
    for _ in range(3):
        with session_scope() as s:
            reminders_due(s)
    notes = session.exec(select(Notification).where(Notification.user_id == ana.id)).all()
    # The pass came late for the day-ahead reminder: only the hour-ahead one, once.
    assert [n.kind for n in notes] == ["reminder_booking"]
    assert "Orbitrap" in notes[0].subject and "提醒" in notes[0].subject
    local = start.astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{local:%Y-%m-%d %H:%M} CST" in notes[0].subject, notes[0].subject


def test_two_senders_send_a_reminder_once(
    session: Session,
    engine: Engine,
    smtp: tuple[Inbox, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, url = smtp
    instrument = create_instrument(session, lab=create_lab(session))
    people = [create_user(session) for _ in range(4)]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    for n, person in enumerate(people):
        session.add(Booking(instrument_id=instrument.id, user_id=person.id,
                            start_at=start + timedelta(hours=n), end_at=start + timedelta(hours=n, minutes=30)))  # fmt: skip
    session.commit()
    engine.pool.dispose()
    env = {**os.environ, "LABSHARE_SMTP_URL": url}
    senders = [
        subprocess.Popen(
            [str(LABSHARE), "notifications", "send"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in senders]
    assert all(p.returncode == 0 for p in senders), outputs
    # Each person's next booking is within a day: one reminder each, sent once in all.
    recipients = sorted(to[0] for to, _message in inbox.messages)
    assert recipients == sorted(p.email for p in people), outputs
    session.rollback()
    notes = session.exec(select(Notification)).all()
    assert len(notes) == 4 and all(n.sent_at for n in notes)


def test_a_lab_sets_its_staffed_hours_and_release(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    url = f"/api/v1/labs/{lab.code}/attendance-policy"
    assert client.get(url).json() == {
        "staffed_from": "08:30:00", "staffed_until": "17:30:00", "release_unchecked_minutes": None,
    }  # fmt: skip
    body = {"staffed_from": "07:00", "staffed_until": "22:00", "release_unchecked_minutes": 20}
    assert client.put(url, json=body, headers=auth(create_user(session))).status_code == 403
    assert (
        client.put(url, json={**body, "staffed_until": "06:00"}, headers=manager).status_code == 422
    )
    assert (
        client.put(url, json={**body, "release_unchecked_minutes": 1}, headers=manager).status_code
        == 422
    )
    r = client.put(url, json=body, headers=manager)
    assert r.status_code == 200 and r.json()["release_unchecked_minutes"] == 20
    assert client.get("/api/v1/labs/NO-SUCH/attendance-policy").status_code == 404


def test_a_seat_holder_is_reminded_the_day_before(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    ana = create_user(session)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=20)
    made = client.post(
        "/api/v1/training/sessions",
        json={"title": "Safety first", "instrument_id": instrument.id, "start": start.isoformat(),
              "end": (start + timedelta(hours=1)).isoformat()},
        headers=manager,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    seat = client.post(
        f"/api/v1/training/sessions/{made.json()['id']}/seats", json={}, headers=auth(ana)
    )
    assert seat.status_code == 201
    for _ in range(2):
        with session_scope() as s:
            reminders_due(s)
    session.rollback()
    kinds = session.exec(select(Notification.kind).where(Notification.user_id == ana.id)).all()
    assert sorted(kinds) == ["reminder_training", "training_scheduled"]


def test_a_request_for_a_category_is_answered_by_a_session_on_one_of_its_instruments(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    nmr = create_instrument(session, lab=lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    ana = create_user(session)
    body = {"lab_id": lab.id, "category_id": nmr.category_id, "level": "supervised"}
    asked = client.post("/api/v1/training/requests", json=body, headers=auth(ana))
    assert asked.status_code == 201 and asked.json()["category_id"] == nmr.category_id
    other_lab = create_lab(session)
    elsewhere = client.post("/api/v1/training/requests",
                            json={**body, "lab_id": other_lab.id}, headers=auth(ana))  # fmt: skip
    assert elsewhere.status_code == 422 and "no instrument in this category" in elsewhere.text
    slot = _monday() + timedelta(days=1)
    made = client.post(
        "/api/v1/training/sessions",
        json={"title": "NMR", "instrument_id": nmr.id, "start": slot.isoformat(),
              "end": (slot + timedelta(hours=1)).isoformat()},
        headers=manager,
    ).json()  # fmt: skip
    assert client.post(f"/api/v1/training/sessions/{made['id']}/seats", json={},
                       headers=auth(ana)).status_code == 201  # fmt: skip
    [request] = client.get("/api/v1/training/requests", headers=auth(ana)).json()
    assert request["status"] == "scheduled"


def test_a_cancelled_session_frees_its_time_and_tells_the_seat_holders(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    ana = create_user(session)
    client.post(
        "/api/v1/training/requests", json={"instrument_id": instrument.id}, headers=auth(ana)
    )
    slot = _monday() + timedelta(days=1)
    made = client.post(
        "/api/v1/training/sessions",
        json={"title": "Off", "instrument_id": instrument.id, "start": slot.isoformat(),
              "end": (slot + timedelta(hours=1)).isoformat()},
        headers=manager,
    ).json()  # fmt: skip
    client.post(f"/api/v1/training/sessions/{made['id']}/seats", json={}, headers=auth(ana))
    url = f"/api/v1/training/sessions/{made['id']}/cancel"
    assert client.post(url, json={"reason": "ill"}, headers=auth(ana)).status_code == 403
    r = client.post(url, json={"reason": "the trainer is ill"}, headers=manager)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(url, json={"reason": "again"}, headers=manager).status_code == 409
    session.rollback()
    assert session.get(Booking, made["booking_id"]).status == BookingStatus.cancelled
    [request] = client.get("/api/v1/training/requests", headers=auth(ana)).json()
    assert request["status"] == "open"
    told = session.exec(select(Notification.body).where(Notification.user_id == ana.id,
                                                        Notification.kind == "training_cancelled")).all()  # fmt: skip
    assert told and "the trainer is ill" in told[0]
    # The time is free again.
    session.rollback()
    assert _book(client, auth(create_user(session)), instrument.id, slot).status_code == 201


def test_a_seat_given_up_is_free_for_the_next_person(client: TestClient, session: Session) -> None:
    """A person who cannot come gives the seat back (their request waits for another
    session, the lab is told); the lab can free someone's seat too (they are told). Not
    once the session has begun, and nobody else's seat is to be found."""
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    boss = create_user(session, role=Role.lab_manager, lab=lab)
    manager = auth(boss)
    ana, ben, eve = create_user(session), create_user(session), create_user(session)
    client.post(
        "/api/v1/training/requests", json={"instrument_id": instrument.id}, headers=auth(ana)
    )
    slot = _monday() + timedelta(days=2)
    made = client.post(
        "/api/v1/training/sessions",
        json={"title": "Small", "instrument_id": instrument.id, "start": slot.isoformat(),
              "end": (slot + timedelta(hours=1)).isoformat(), "capacity": 1},
        headers=manager,
    ).json()  # fmt: skip
    seats = f"/api/v1/training/sessions/{made['id']}/seats"
    mine = f"/api/v1/training/sessions/{made['id']}/seat"
    seat = client.post(seats, json={}, headers=auth(ana)).json()
    assert client.post(seats, json={}, headers=auth(ben)).status_code == 409  # full
    client.post(
        "/api/v1/training/requests", json={"instrument_id": instrument.id}, headers=auth(ben)
    )
    [asked] = client.get("/api/v1/training/requests", headers=auth(ana)).json()
    assert asked["status"] == "scheduled"

    # Nobody else's seat: the same 404 as no seat at all.
    assert client.delete(f"{seats}/{seat['id']}", headers=auth(eve)).status_code == 404
    assert client.delete(mine, headers=auth(eve)).status_code == 404
    gone = client.delete(mine, headers=auth(ana))
    assert gone.status_code == 200 and gone.json()["user_id"] == ana.id
    assert client.delete(mine, headers=auth(ana)).status_code == 404
    [asked] = client.get("/api/v1/training/requests", headers=auth(ana)).json()
    assert asked["status"] == "open"
    session.rollback()
    [(subject, body)] = session.exec(select(Notification.subject, Notification.body).where(
        Notification.user_id == boss.id, Notification.kind == "training_seat_freed")).all()  # fmt: skip
    assert subject.startswith("A seat is free in Small")
    # The lab chooses who gets it, and is told who is still asking (Ben).
    assert "without a seat in it: 1." in body

    # The seat is Ben's now; the lab gives it back, and Ben is told.
    taken = client.post(seats, json={}, headers=auth(ben))
    assert taken.status_code == 201
    assert client.delete(f"{seats}/{taken.json()['id']}", headers=auth(ana)).status_code == 404
    freed = client.delete(f"{seats}/{taken.json()['id']}", headers=manager)
    assert freed.status_code == 200
    session.rollback()
    told = session.exec(select(Notification.subject).where(
        Notification.user_id == ben.id, Notification.kind == "training_seat_freed")).all()  # fmt: skip
    assert told and "given back by the lab" in told[0]

    # A manager giving up their own seat is not told of it.
    assert client.post(seats, json={}, headers=manager).status_code == 201
    assert client.delete(mine, headers=manager).status_code == 200
    session.rollback()
    notices = session.exec(select(func.count()).select_from(Notification).where(
        Notification.user_id == boss.id, Notification.kind == "training_seat_freed")).one()  # fmt: skip
    assert notices == 1  # Ana's give-up, not their own

    # Once the session has begun, seats stay as they are.
    again = client.post(seats, json={}, headers=auth(ana)).json()
    session.rollback()
    started = session.get(TrainingSession, made["id"])
    assert started is not None
    started.start_at = datetime.now(UTC) - timedelta(minutes=5)
    session.add(started)
    session.commit()
    late = client.delete(mine, headers=auth(ana))
    assert late.status_code == 409 and "started" in late.json()["detail"]
    assert client.delete(f"{seats}/{again['id']}", headers=manager).status_code == 409
