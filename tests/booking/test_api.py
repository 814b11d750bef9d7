"""Booking through the HTTP API: rules, conflicts with alternatives, retries, changes."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from sqlmodel import Session, select

from booking.models import Booking, BookingStatus
from booking.notifications.models import Notification
from core.models import Role
from core.timeutil import utcnow
from instruments.models import Blackout, BlackoutKind, Institution, OpeningHours, Qualification
from tests.booking.helpers import at, body, z
from tests.factories import auth, create_instrument, create_lab, create_user


def test_book_then_overlap_is_409_with_conflicts_and_alternatives(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab)
    twin = create_instrument(session, lab=lab)
    alice, bob = create_user(session), create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 11)), headers=auth(alice)
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["status"] == "confirmed"
    assert first["start"] == z(at(2, 9)) and first["start"].endswith("Z")
    assert r.headers["ETag"] == f'W/"{first["id"]}-1"'

    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 10), at(2, 12)), headers=auth(bob))
    assert r.status_code == 409, r.text
    data = r.json()
    assert data["conflicts"] == [{"start": z(at(2, 9)), "end": z(at(2, 11)), "kind": "booking"}]
    assert "user" not in r.text and alice.email not in r.text
    alts = data["alternatives"]
    same = [a for a in alts if a["instrument_id"] == inst.id]
    other = [a for a in alts if a["instrument_id"] != inst.id]
    # Nearest on the same instrument: right after Alice (11:00), and right before her (07:00).
    assert same[0] == {"instrument_id": inst.id, "start": z(at(2, 11)), "end": z(at(2, 13))}
    assert {"instrument_id": inst.id, "start": z(at(2, 7)), "end": z(at(2, 9))} in same
    assert other == [{"instrument_id": twin.id, "start": z(at(2, 10)), "end": z(at(2, 12))}]
    # Back to back is fine (half-open intervals).
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 11), at(2, 12)), headers=auth(bob))
    assert r.status_code == 201, r.text


def test_rules_give_422_with_a_reason(client, session: Session):
    inst = create_instrument(
        session,
        slot_step_minutes=30,
        min_minutes=60,
        max_minutes=240,
        lead_minutes=120,
        horizon_days=30,
    )
    user = create_user(session)
    h = auth(user)
    cases = {
        "grid": body(inst.id, at(2, 9, 15), at(2, 10, 15)),
        "shortest": body(inst.id, at(2, 9), at(2, 9, 30)),
        "longest": body(inst.id, at(2, 9), at(2, 14)),
        "at least": body(inst.id, at(0, 0) - timedelta(hours=1), at(0, 0)),
        "days ahead": body(inst.id, at(40, 9), at(40, 10)),
    }
    for reason, payload in cases.items():
        r = client.post("/api/v1/bookings", json=payload, headers=h)
        assert r.status_code == 422, (reason, r.text)
        assert reason in r.json()["detail"], (reason, r.text)
    assert session.exec(select(Booking)).all() == []


def test_bad_input_is_4xx_never_500(client, session: Session):
    inst = create_instrument(session)
    h = auth(create_user(session))
    bad = [
        body(inst.id, at(2, 11), at(2, 9)),
        body(inst.id, at(2, 9), at(2, 9)),
        {"instrument_id": inst.id, "start": "2030-01-01T09:00:00", "end": "2030-01-01T10:00:00"},
        {"instrument_id": inst.id, "start": "tomorrow", "end": "later"},
        body(inst.id, at(2, 9), at(2, 10), recurrence="FREQ=WEEKLY"),
        body(inst.id, at(2, 9), at(2, 10), recurrence="not a rule"),
        body(inst.id, at(2, 9), at(2, 10), recurrence="FREQ=DAILY;COUNT=5000"),
        body(inst.id, at(2, 9), at(2, 10), recurrence="FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30;COUNT=2"),
        body(inst.id, at(2, 9), at(2, 10), purpose="x" * 5000),
        body(inst.id, at(2, 9), at(2, 10), surprise=1),
        body(2**40, at(2, 9), at(2, 10)),
    ]
    for payload in bad:
        r = client.post("/api/v1/bookings", json=payload, headers=h)
        assert r.status_code == 422, (payload, r.text)
        assert r.json()["detail"]
    r = client.post("/api/v1/bookings", json=body(999999, at(2, 9), at(2, 10)), headers=h)
    assert r.status_code == 404
    r = client.post("/api/v1/bookings", content=b"{" * 100000, headers=h)
    assert r.status_code == 422
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)))
    assert r.status_code == 401
    assert session.exec(select(Booking)).all() == []


def test_opening_hours_and_blackouts_are_conflicts(client, session: Session):
    inst = create_instrument(session, open_all_week=False)
    session.add_all(
        OpeningHours(instrument_id=inst.id, weekday=d, opens=time(9), closes=time(17))
        for d in range(7)
    )
    session.add(
        Blackout(
            instrument_id=inst.id,
            start_at=at(2, 13),
            end_at=at(2, 14),
            kind=BlackoutKind.imported,
            reason="lab calendar",
        )
    )
    session.commit()
    h = auth(create_user(session))
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 7), at(2, 10)), headers=h)
    assert r.status_code == 409
    assert r.json()["conflicts"] == [{"start": z(at(2, 7)), "end": z(at(2, 9)), "kind": "closed"}]
    assert r.json()["alternatives"][0]["start"] == z(at(2, 9))
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 12), at(2, 14)), headers=h)
    assert r.status_code == 409
    assert [c["kind"] for c in r.json()["conflicts"]] == ["blackout"]
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 13)), headers=h)
    assert r.status_code == 201


def test_approval_flow_pending_approve_reject_expire(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab, approval_required=True)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    owner = create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(3, 9), at(3, 10)), headers=auth(owner)
    )
    assert r.status_code == 201 and r.json()["status"] == "pending"
    assert r.json()["expires_at"] is not None
    pending_id = r.json()["id"]
    # The pending booking holds the slot.
    other = create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(3, 9), at(3, 10)), headers=auth(other)
    )
    assert r.status_code == 409
    # Only the lab's manager decides.
    assert (
        client.post(f"/api/v1/bookings/{pending_id}/approve", headers=auth(owner)).status_code
        == 403
    )
    r = client.post(f"/api/v1/bookings/{pending_id}/approve", headers=auth(manager))
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(3, 11), at(3, 12)), headers=auth(owner)
    )
    rejected_id = r.json()["id"]
    r = client.post(
        f"/api/v1/bookings/{rejected_id}/reject",
        json={"reason": "booked out"},
        headers=auth(manager),
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    kinds = session.exec(select(Notification.kind).where(Notification.user_id == owner.id)).all()
    assert sorted(kinds) == ["booking_approved", "booking_rejected"]
    asked = session.exec(select(Notification.kind).where(Notification.user_id == manager.id)).all()
    assert asked == ["approval_requested", "approval_requested"]


def test_expiry_pass_frees_the_slot(client, session: Session):
    from booking.service import bookings_expire
    from core.db import session_scope

    inst = create_instrument(session, approval_required=True)
    owner = create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(3, 9), at(3, 10)), headers=auth(owner)
    )
    booking_id = r.json()["id"]
    with session_scope() as s:
        assert bookings_expire(s, now=at(3, 9)) == [booking_id]
    session.expire_all()
    assert session.get(Booking, booking_id).status == BookingStatus.expired
    note = session.exec(select(Notification).where(Notification.booking_id == booking_id)).one()
    assert note.kind == "booking_expired" and note.user_id == owner.id
    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(3, 9), at(3, 10)),
        headers=auth(create_user(session)),
    )
    assert r.status_code == 201


def test_an_overdue_request_in_the_way_expires_when_someone_books(client, session: Session):
    """A pending request past its decision time that the periodic pass has not reached yet
    does not hold the slot: the booking that finds it in its way expires it (its time is
    read with the instrument, booking.service.signed_in_at_instrument) and takes the slot."""
    inst = create_instrument(session, approval_required=True)
    owner, other = create_user(session), create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(3, 9), at(3, 10)), headers=auth(owner)
    )
    assert r.status_code == 201 and r.json()["status"] == "pending"
    pending = session.get(Booking, r.json()["id"])
    assert pending is not None
    pending.expires_at = utcnow() - timedelta(minutes=1)
    session.add(pending)
    session.commit()
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(3, 9), at(3, 10)), headers=auth(other)
    )
    assert r.status_code == 201, r.text
    session.expire_all()
    assert session.get(Booking, pending.id).status == BookingStatus.expired


def test_qualification_and_quota(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab, qualification_required=True, weekly_quota_hours=3)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    user = create_user(session)
    r = client.post("/api/v1/bookings", json=body(inst.id, at(8, 9), at(8, 10)), headers=auth(user))
    assert r.status_code == 403 and "qualification" in r.json()["detail"]
    r = client.post(
        f"/api/v1/instruments/{inst.id}/qualifications",
        json={"email": user.email},
        headers=auth(user),
    )
    assert r.status_code == 403
    r = client.post(
        f"/api/v1/instruments/{inst.id}/qualifications",
        json={"email": user.email},
        headers=auth(manager),
    )
    # They never booked with the lab: their email (which the manager typed), not who they are.
    assert r.status_code == 201 and r.json()["user_id"] is None and r.json()["name"] == ""
    again = client.post(
        f"/api/v1/instruments/{inst.id}/qualifications",
        json={"email": user.email},
        headers=auth(manager),
    )
    assert again.status_code == 200
    by_id = client.post(
        f"/api/v1/instruments/{inst.id}/qualifications",
        json={"user_id": user.id},
        headers=auth(manager),
    )
    assert by_id.status_code == 422  # by exact email only
    listed = client.get(f"/api/v1/instruments/{inst.id}/qualifications", headers=auth(manager))
    assert [q["email"] for q in listed.json()] == [user.email]
    assert session.exec(select(Qualification)).one().granted_by_id == manager.id
    # Quota: 3 h per local ISO week on this instrument.
    r = client.post("/api/v1/bookings", json=body(inst.id, at(8, 9), at(8, 11)), headers=auth(user))
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(8, 12), at(8, 14)), headers=auth(user)
    )
    assert r.status_code == 422 and "quota" in r.json()["detail"]
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(8, 12), at(8, 13)), headers=auth(user)
    )
    assert r.status_code == 201
    # Next week is a fresh week.
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(15, 9), at(15, 12)), headers=auth(user)
    )
    assert r.status_code == 201, r.text


def test_idempotency_key_replays_the_first_answer(client, session: Session):
    inst = create_instrument(session)
    user = create_user(session)
    h = {**auth(user), "Idempotency-Key": "order-42"}
    first = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=h)
    again = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(session.exec(select(Booking)).all()) == 1
    other = client.post("/api/v1/bookings", json=body(inst.id, at(2, 12), at(2, 13)), headers=h)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    # Another person's identical key is theirs alone.
    h2 = {**auth(create_user(session)), "Idempotency-Key": "order-42"}
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 12), at(2, 13)), headers=h2)
    assert r.status_code == 201


def test_get_list_cancel_and_reschedule_with_etag(client, session: Session):
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab)
    owner, stranger = create_user(session), create_user(session)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(owner)
    )
    booking_id = r.json()["id"]
    got = client.get(f"/api/v1/bookings/{booking_id}", headers=auth(owner))
    assert got.status_code == 200 and got.headers["ETag"] == f'W/"{booking_id}-1"'
    assert client.get(f"/api/v1/bookings/{booking_id}", headers=auth(stranger)).status_code == 404
    assert client.get(f"/api/v1/bookings/{booking_id}", headers=auth(manager)).status_code == 200
    assert [
        b["id"] for b in client.get("/api/v1/bookings", headers=auth(manager)).json()["items"]
    ] == [booking_id]
    assert client.get("/api/v1/bookings", headers=auth(stranger)).json()["items"] == []

    move = {"start": at(2, 14).isoformat(), "end": at(2, 15).isoformat()}
    r = client.patch(f"/api/v1/bookings/{booking_id}", json=move, headers=auth(owner))
    assert r.status_code == 428
    r = client.patch(
        f"/api/v1/bookings/{booking_id}",
        json=move,
        headers={**auth(owner), "If-Match": got.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["start"] == z(at(2, 14)) and r.json()["version"] == 2
    r = client.patch(
        f"/api/v1/bookings/{booking_id}",
        json=move,
        headers={**auth(owner), "If-Match": got.headers["ETag"]},
    )
    assert r.status_code == 412
    # Rescheduling onto someone else's time is the same 409.
    client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 16), at(2, 17)), headers=auth(stranger)
    )
    r = client.patch(
        f"/api/v1/bookings/{booking_id}",
        json={"start": at(2, 16).isoformat(), "end": at(2, 17).isoformat()},
        headers={**auth(owner), "If-Match": f'W/"{booking_id}-2"'},
    )
    assert r.status_code == 409 and r.json()["conflicts"][0]["kind"] == "booking"
    # Moving within its own time (overlapping itself) is fine.
    r = client.patch(
        f"/api/v1/bookings/{booking_id}",
        json={"start": at(2, 14, 30).isoformat(), "end": at(2, 15, 30).isoformat()},
        headers={**auth(owner), "If-Match": f'W/"{booking_id}-2"'},
    )
    assert r.status_code == 200, r.text

    r = client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(stranger))
    assert r.status_code == 404
    r = client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(owner))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (
        client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(owner)).status_code == 422
    )
    listed = client.get("/api/v1/bookings", params={"status": "cancelled"}, headers=auth(owner))
    assert [b["id"] for b in listed.json()["items"]] == [booking_id]
    listed = client.get(
        "/api/v1/bookings",
        params={"start": at(2, 16).isoformat(), "end": at(2, 17).isoformat()},
        headers=auth(owner),
    )
    assert listed.json()["items"] == []
    assert (
        client.get(
            "/api/v1/bookings", params={"start": "2030-01-01T00:00"}, headers=auth(owner)
        ).status_code
        == 422
    )


def test_pagination(client, session: Session):
    inst = create_instrument(session)
    user = create_user(session)
    for hour in range(5):
        client.post(
            "/api/v1/bookings",
            json=body(inst.id, at(2, 8 + hour), at(2, 9 + hour)),
            headers=auth(user),
        )
    page = client.get("/api/v1/bookings", params={"limit": 2}, headers=auth(user)).json()
    seen = [b["id"] for b in page["items"]]
    while page["next"]:
        page = client.get(
            "/api/v1/bookings", params={"limit": 2, "next": page["next"]}, headers=auth(user)
        ).json()
        seen += [b["id"] for b in page["items"]]
    assert len(seen) == 5 == len(set(seen))


def test_alternatives_elsewhere_nearest_first_and_only_where_allowed(client, session: Session):
    """The same time elsewhere: same lab, then same institution, then the rest; never an
    instrument the person may not use, even one whose grant ran out after the server
    started (the statement is built once, at import; its moment is a parameter)."""
    lab = create_lab(session)
    institution = session.get(Institution, lab.institution_id)
    inst = create_instrument(session, lab=lab)
    far = create_instrument(session)  # another institution
    near = create_instrument(session, lab=create_lab(session, institution=institution))
    same = create_instrument(session, lab=lab)
    expired = create_instrument(session, lab=lab, qualification_required=True)
    granted = create_instrument(session, lab=lab, qualification_required=True)
    alice, bob = create_user(session), create_user(session)
    for instrument, expires in ((expired, utcnow() - timedelta(seconds=1)), (granted, None)):
        session.add(Qualification(user_id=bob.id, instrument_id=instrument.id, expires_at=expires))
    session.commit()
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(alice)
    )
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(bob))
    assert r.status_code == 409, r.text
    elsewhere = [
        a["instrument_id"] for a in r.json()["alternatives"] if a["instrument_id"] != inst.id
    ]
    assert elsewhere == [same.id, granted.id, near.id, far.id]


def test_alternatives_follow_changes_to_the_category(client, session: Session):
    """Each process keeps a category's instruments between refusals (booking.elsewhere);
    a lab that retires one, changes its rules or adds one is heard on the next refusal."""
    lab = create_lab(session)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    inst = create_instrument(session, lab=lab)
    twin = create_instrument(session, lab=lab)
    alice, bob = create_user(session), create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(alice)
    )
    assert r.status_code == 201, r.text

    def elsewhere() -> list[int]:
        r = client.post(
            "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(bob)
        )
        assert r.status_code == 409, r.text
        return [
            a["instrument_id"] for a in r.json()["alternatives"] if a["instrument_id"] != inst.id
        ]

    assert elsewhere() == [twin.id]
    r = client.patch(
        f"/api/v1/instruments/{twin.id}", json={"status": "retired"}, headers=auth(manager)
    )
    assert r.status_code == 200, r.text
    assert elsewhere() == []
    newcomer = create_instrument(session, lab=lab)  # a new row: a newer updated_at
    assert elsewhere() == [newcomer.id]
    rules = client.get(f"/api/v1/instruments/{newcomer.id}").json()["rules"]
    r = client.patch(
        f"/api/v1/instruments/{newcomer.id}",
        json={"rules": {**rules, "min_minutes": 120, "max_minutes": 240}},
        headers=auth(manager),
    )
    assert r.status_code == 200, r.text
    assert elsewhere() == []  # a one-hour booking is now too short for it


def test_a_new_booking_records_its_event_with_it(client, session: Session):
    """A 201 writes the booking and its booking.created event together (one statement on
    PostgreSQL, core.events.insert_with_event); a 409 writes neither."""
    from core.events import Event

    inst = create_instrument(session)
    alice = create_user(session)
    r = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(alice)
    )
    assert r.status_code == 201, r.text
    refused = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=auth(alice)
    )
    assert refused.status_code == 409
    session.rollback()
    events = session.exec(select(Event).where(Event.type == "booking.created")).all()
    assert [(e.lab_id, e.data) for e in events] == [
        (
            inst.lab_id,
            {
                "booking_id": r.json()["id"],
                "instrument_id": inst.id,
                "user_id": alice.id,
                "start": z(at(2, 9)),
                "end": z(at(2, 10)),
                "status": "confirmed",
                "series_id": None,
            },
        )
    ]


def test_booking_checks_the_person_in_its_first_statement(client, session: Session, engine):
    """A booking reads the person and locks the instrument in one statement
    (booking.service.signed_in_at_instrument); signing out or being deactivated still ends
    it at once, and not being signed in is said before an unknown instrument."""
    from sqlalchemy import event

    from core.models import User
    from tests.factories import sign_in

    inst = create_instrument(session)
    alice = create_user(session)
    headers = sign_in(client, alice.email)
    seen: list[str] = []
    listener = lambda *a: seen.append(a[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        r = client.post(
            "/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=headers
        )
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert r.status_code == 201, r.text
    first = next(s for s in seen if s.lstrip().upper().startswith("SELECT"))
    assert "auth_session" in first and "instrument" in first

    unknown = client.post(
        "/api/v1/bookings", json=body(99999, at(2, 9), at(2, 10)), headers=headers
    )
    assert unknown.status_code == 404
    assert client.post("/api/v1/auth/signout", headers=headers).status_code == 204
    for instrument_id in (inst.id, 99999):
        gone = client.post(
            "/api/v1/bookings", json=body(instrument_id, at(2, 11), at(2, 12)), headers=headers
        )
        assert gone.status_code == 401, gone.text

    bob = create_user(session)
    bob_headers = sign_in(client, bob.email)
    row = session.get(User, bob.id)
    assert row is not None
    row.is_active = False
    session.add(row)
    session.commit()
    refused = client.post(
        "/api/v1/bookings", json=body(inst.id, at(2, 13), at(2, 14)), headers=bob_headers
    )
    assert refused.status_code == 401, refused.text
    session.rollback()
    kept = session.exec(select(Booking).where(Booking.instrument_id == inst.id)).all()
    assert [b.user_id for b in kept] == [alice.id]


def test_a_booking_reads_the_instruments_time_in_its_first_statement(
    client, session: Session, engine
):
    """A single booking reads the person, the instrument (locked) and the instrument's
    busy time around the wanted time in one statement: a 201 then only writes, and a 409
    reads nothing more of that instrument (booking.service.signed_in_at_instrument)."""
    from sqlalchemy import event

    inst = create_instrument(session)
    session.add(
        Blackout(
            instrument_id=inst.id,
            start_at=at(2, 13),
            end_at=at(2, 14),
            kind=BlackoutKind.maintenance,
            reason="service",
        )
    )
    session.commit()
    h = auth(create_user(session))
    # The instrument's opening hours, read once and kept by the process.
    warm = client.post("/api/v1/bookings", json=body(inst.id, at(2, 7), at(2, 8)), headers=h)
    assert warm.status_code == 201, warm.text
    seen: list[str] = []
    listener = lambda *a: seen.append(" ".join(a[2].split()))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        booked = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=h)
        booked_sql, seen[:] = list(seen), []
        refused = client.post(
            "/api/v1/bookings", json=body(inst.id, at(2, 13), at(2, 14)), headers=h
        )
        refused_sql = list(seen)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert booked.status_code == 201, booked.text
    assert refused.status_code == 409, refused.text
    assert [c["kind"] for c in refused.json()["conflicts"]] == ["blackout"]
    # The nearest free hours on the instrument, from what the first statement read.
    assert {"instrument_id": inst.id, "start": z(at(2, 14)), "end": z(at(2, 15))} in refused.json()[
        "alternatives"
    ]
    work = {"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"}
    for statements in (booked_sql, refused_sql):
        first, *rest = [s for s in statements if s.upper() not in work]
        assert "auth_session" in first and "FROM blackout" in first, first
        assert not [s for s in rest if "FROM blackout" in s and "NOT (EXISTS" not in s]
    # A 201 then only writes: the booking and its event, one statement on PostgreSQL.
    writes = [s.split()[0] for s in booked_sql if s.upper() not in work][1:]
    assert writes == (["WITH"] if engine.dialect.name == "postgresql" else ["INSERT", "INSERT"])


def test_a_booking_at_an_instrument_someone_holds_waits_and_sees_their_booking(
    client, session: Session, engine, backend: str
):
    """The first statement skips an instrument another transaction holds (PostgreSQL's
    SKIP LOCKED) rather than wait for it on a snapshot from before: the booking then waits
    for the lock and checks afresh, so it answers the plain 409, not the raced one."""
    if backend != "postgresql":
        pytest.skip("SQLite's writers take turns from their transaction's start")
    import threading

    import psycopg

    inst = create_instrument(session)
    h = auth(create_user(session))
    other = create_user(session)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as holder:
        holder.execute("SELECT id FROM instrument WHERE id = %s FOR NO KEY UPDATE", (inst.id,))
        holder.execute(
            "INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose,"
            " version, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, 'confirmed', '', 1, now(), now())",
            (inst.id, other.id, at(2, 9), at(2, 10)),
        )
        threading.Timer(0.5, holder.commit).start()
        r = client.post("/api/v1/bookings", json=body(inst.id, at(2, 9), at(2, 10)), headers=h)
    assert r.status_code == 409, r.text
    assert r.json()["conflicts"] == [{"start": z(at(2, 9)), "end": z(at(2, 10)), "kind": "booking"}]
    assert "a moment ago" not in r.json()["detail"]
