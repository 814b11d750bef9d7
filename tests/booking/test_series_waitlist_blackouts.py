"""Series, the waitlist and blackouts through the API."""

from __future__ import annotations

from sqlmodel import Session, select

from booking.models import Booking, BookingStatus, WaitlistEntry
from booking.notifications.models import Notification
from core.models import Role
from tests.booking.helpers import at, body, z
from tests.factories import auth, create_instrument, create_lab, create_user


def test_series_all_or_nothing_and_partial(client, session: Session):
    inst = create_instrument(session)
    owner, other = create_user(session), create_user(session)
    # Someone holds the third occurrence.
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(16, 9), at(16, 10)), headers=auth(other)
    )
    assert r.status_code == 201
    weekly = "FREQ=WEEKLY;COUNT=4"
    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(2, 9), at(2, 10), recurrence=weekly),
        headers=auth(owner),
    )
    assert r.status_code == 409, r.text
    data = r.json()
    assert data["conflicts"] == [{"start": z(at(16, 9)), "end": z(at(16, 10)), "kind": "booking"}]
    assert [o["start"] for o in data["occurrences"]] == [z(at(16, 9))]
    assert session.exec(select(Booking).where(Booking.user_id == owner.id)).all() == []

    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(2, 9), at(2, 10), recurrence=weekly, allow_partial=True),
        headers=auth(owner),
    )
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["series_id"] and data["id"] == data["bookings"][0]["id"]
    assert [b["start"] for b in data["bookings"]] == [z(at(d, 9)) for d in (2, 9, 23)]
    assert [(s["start"], s["conflicts"][0]["kind"]) for s in data["skipped"]] == [
        (z(at(16, 9)), "booking")
    ]


def test_series_that_overlaps_itself_or_leaves_the_horizon(client, session: Session):
    inst = create_instrument(session, horizon_days=20)
    h = auth(create_user(session))
    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(2, 9), at(2, 11), recurrence="FREQ=HOURLY;COUNT=3"),
        headers=h,
    )
    assert r.status_code == 409
    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(2, 9), at(2, 10), recurrence="FREQ=WEEKLY;COUNT=5"),
        headers=h,
    )
    assert r.status_code == 422 and "days ahead" in r.json()["detail"]
    assert session.exec(select(Booking)).all() == []


def test_waitlist_gets_the_freed_slot(client, session: Session):
    inst = create_instrument(session)
    holder, waiter, late = create_user(session), create_user(session), create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 11)), headers=auth(holder)
    )
    held = r.json()["id"]
    # Free time is booked, not waited for.
    r = client.post(
        "/api/v1/waitlist", json=body(inst.id, at(2, 12), at(2, 13)), headers=auth(waiter)
    )
    assert r.status_code == 422
    r = client.post(
        "/api/v1/waitlist", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(waiter)
    )
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["status"] == "waiting"
    r = client.post("/api/v1/waitlist", json=body(inst.id, at(2, 9), at(2, 11)), headers=auth(late))
    assert r.status_code == 201
    assert [e["id"] for e in client.get("/api/v1/waitlist", headers=auth(waiter)).json()] == [
        entry["id"]
    ]

    assert client.post(f"/api/v1/bookings/{held}/cancel", headers=auth(holder)).status_code == 200
    mine = client.get("/api/v1/waitlist", headers=auth(waiter)).json()[0]
    assert mine["status"] == "booked" and mine["booking_id"]
    booking = client.get(f"/api/v1/bookings/{mine['booking_id']}", headers=auth(waiter)).json()
    assert (booking["start"], booking["status"]) == (z(at(2, 9)), "confirmed")
    # The later, longer request no longer fits fully: it keeps waiting.
    assert client.get("/api/v1/waitlist", headers=auth(late)).json()[0]["status"] == "waiting"
    note = session.exec(select(Notification).where(Notification.user_id == waiter.id)).one()
    assert note.kind == "waitlist_booked" and note.booking_id == mine["booking_id"]
    # Withdraw.
    late_entry = client.get("/api/v1/waitlist", headers=auth(late)).json()[0]["id"]
    assert client.delete(f"/api/v1/waitlist/{late_entry}", headers=auth(waiter)).status_code == 404
    r = client.delete(f"/api/v1/waitlist/{late_entry}", headers=auth(late))
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"


def test_blackout_displaces_and_offers_alternatives(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab)
    twin = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    owner = create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(4, 10), at(4, 11)), headers=auth(owner)
    )
    booking_id = r.json()["id"]
    blackout = {
        "kind": "maintenance",
        "start": at(4, 8).isoformat(),
        "end": at(4, 12).isoformat(),
        "reason": "annual service",
    }
    r = client.post(f"/api/v1/instruments/{inst.id}/blackouts", json=blackout, headers=auth(owner))
    assert r.status_code == 403
    r = client.post(
        f"/api/v1/instruments/{inst.id}/blackouts", json=blackout, headers=auth(manager)
    )
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["displaced"] == [
        {"id": booking_id, "start": z(at(4, 10)), "end": z(at(4, 11)), "status": "displaced"}
    ]
    assert "user" not in str(data["displaced"])
    session.expire_all()
    assert session.get(Booking, booking_id).status == BookingStatus.displaced
    note = session.exec(select(Notification).where(Notification.user_id == owner.id)).one()
    assert note.kind == "booking_displaced"
    offers = note.data["alternatives"]
    assert {"instrument_id": inst.id, "start": z(at(4, 12)), "end": z(at(4, 13))} in offers
    assert {"instrument_id": twin.id, "start": z(at(4, 10)), "end": z(at(4, 11))} in offers
    # The blackout now blocks booking, and shows in the list and in availability.
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(4, 9), at(4, 10)), headers=auth(owner)
    )
    assert r.status_code == 409 and r.json()["conflicts"][0]["kind"] == "blackout"
    listed = client.get(f"/api/v1/instruments/{inst.id}/blackouts").json()
    assert [b["id"] for b in listed] == [data["id"]]
    r = client.delete(
        f"/api/v1/instruments/{inst.id}/blackouts/{data['id']}", headers=auth(manager)
    )
    assert r.status_code == 204
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(4, 9), at(4, 10)), headers=auth(owner)
    )
    assert r.status_code == 201


def test_blackout_bad_input(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab)
    h = auth(create_user(session, role=Role.lab_manager, lab=lab))
    for payload in (
        {"kind": "imported", "start": at(4, 8).isoformat(), "end": at(4, 9).isoformat()},
        {"kind": "maintenance", "start": at(4, 9).isoformat(), "end": at(4, 8).isoformat()},
        {"kind": "maintenance", "start": "2030-01-01T08:00:00", "end": "2030-01-01T09:00:00"},
    ):
        assert (
            client.post(
                f"/api/v1/instruments/{inst.id}/blackouts", json=payload, headers=h
            ).status_code
            == 422
        )
    assert (
        client.post(
            "/api/v1/instruments/99999/blackouts",
            headers=h,
            json={"start": at(4, 8).isoformat(), "end": at(4, 9).isoformat()},
        ).status_code
        == 404
    )
    assert session.exec(select(WaitlistEntry)).all() == []


def test_a_pending_series_asks_the_lab_managers_once(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab, approval_required=True)
    managers = [create_user(session, role=Role.lab_manager, lab=lab) for _ in range(2)]
    elsewhere = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    owner = create_user(session)
    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(2, 9), at(2, 10), recurrence="FREQ=WEEKLY;COUNT=3"),
        headers=auth(owner),
    )
    assert r.status_code == 201, r.text
    data = r.json()
    assert [b["status"] for b in data["bookings"]] == ["pending"] * 3
    notes = session.exec(select(Notification).where(Notification.kind == "approval_requested"))
    got = sorted(((n.user_id, n.booking_id, n.subject, n.data) for n in notes), key=str)
    assert [g[0] for g in got] == sorted(m.id for m in managers)
    for _, booking_id, subject, note in got:
        assert booking_id == data["id"]
        assert subject.startswith("A series of 3 bookings of ")
        assert note["series_id"] == data["series_id"] and note["occurrences"] == 3
        assert note["first_start"] == z(at(2, 9))
    assert elsewhere.id not in [g[0] for g in got]
    # A series that needs no approval asks nobody.
    free = create_instrument(session, lab=lab)
    r = client.post(
        "/api/v1/bookings",
        json=body(free.id, at(2, 9), at(2, 10), recurrence="FREQ=WEEKLY;COUNT=2"),
        headers=auth(owner),
    )
    assert r.status_code == 201 and r.json()["status"] == "confirmed"
    count = len(session.exec(select(Notification)).all())
    assert count == 2
