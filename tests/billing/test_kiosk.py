"""Check-in without a gateway, on both databases: the kiosk's refusals and PIN throttle,
a kiosk session billed by the lab's policy (a gateway's record of the same booking
outranks it), an operator's record by hand, and a booking nobody checks into released to
the waitlist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from billing.invoices import invoice_run
from billing.models import Charge, ChargeBasis
from billing.rates import policy_set, rate_card_create
from billing.schemas import ChargingPolicyIn, RateCardIn
from booking.attendance import booking_pin
from booking.models import Booking, BookingStatus, WaitlistEntry, WaitlistStatus
from booking.notifications.models import Notification
from core.db import session_scope
from instruments.models import Lab, PayerClass
from telemetry.kiosk import check_in, check_out
from telemetry.models import UsageSession, UsageSource
from telemetry.reconcile import usage_reconcile
from tests.billing.helpers import NOV, book, use
from tests.factories import auth, create_instrument


def _booking(
    session: Session, instrument_id: int, user_id: int, start: datetime, minutes: int
) -> Booking:
    booking = Booking(
        instrument_id=instrument_id, user_id=user_id, start_at=start,
        end_at=start + timedelta(minutes=minutes),
    )  # fmt: skip
    session.add(booking)
    session.commit()
    return booking


def test_kiosk_check_in_and_out_with_refusals(client: TestClient, session: Session, net) -> None:
    now = datetime.now(UTC)
    mine = _booking(session, net.instrument.id, net.researcher.id, now - timedelta(minutes=10), 60)
    later = _booking(session, net.instrument.id, net.researcher2.id, now + timedelta(hours=3), 60)
    url = f"/api/v1/instruments/{net.instrument.id}"
    kiosk = client.get(f"{url}/kiosk").json()
    assert kiosk["checked_in"] is False and kiosk["booking_end"] is not None
    assert "user" not in str(kiosk)

    wrong = "000000" if booking_pin(mine.id) != "000000" else "111111"
    r = client.post(f"{url}/check-in", json={"pin": wrong})
    assert r.status_code == 409 and "not for a booking" in r.json()["detail"]
    assert client.post(f"{url}/check-in", json={"pin": "12ab"}).status_code == 422
    assert client.post(f"{url}/check-in", json={}).status_code == 422  # no PIN, not signed in
    # Signed in with someone else's PIN.
    r = client.post(
        f"{url}/check-in", json={"pin": booking_pin(mine.id)}, headers=auth(net.researcher2)
    )
    assert r.status_code == 409 and "someone else" in r.json()["detail"]
    # Signed in before one's booking: told when check-in opens.
    r = client.post(f"{url}/check-in", json={}, headers=auth(net.researcher2))
    assert r.status_code == 409 and "check in from" in r.json()["detail"], r.text
    assert later.id is not None

    r = client.post(f"{url}/check-in", json={"pin": booking_pin(mine.id)})
    assert r.status_code == 200, r.text
    usage = r.json()
    assert usage["source"] == "kiosk" and usage["booking"]["id"] == mine.id and usage["end"] is None
    again = client.post(f"{url}/check-in", json={}, headers=auth(net.researcher))
    assert again.status_code == 200 and again.json()["id"] == usage["id"]
    assert client.get(f"{url}/kiosk").json()["checked_in"] is True
    # Only the person (or their PIN) checks out.
    assert (
        client.post(f"{url}/check-out", json={}, headers=auth(net.researcher2)).status_code == 409
    )
    out = client.post(f"{url}/check-out", json={"pin": booking_pin(mine.id)})
    assert out.status_code == 200 and out.json()["end"] is not None
    assert client.post(f"{url}/check-out", json={}).status_code == 409


def test_wrong_pins_are_counted_and_then_refused(client: TestClient, session: Session, net) -> None:
    now = datetime.now(UTC)
    mine = _booking(session, net.instrument.id, net.researcher.id, now - timedelta(minutes=5), 60)
    url = f"/api/v1/instruments/{net.instrument.id}/check-in"
    right = booking_pin(mine.id)
    wrongs = [f"{n:06d}" for n in range(20) if f"{n:06d}" != right][:10]
    for pin in wrongs:
        assert client.post(url, json={"pin": pin}).status_code == 409
    r = client.post(url, json={"pin": right})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_kiosk_session_is_billed_and_a_gateway_outranks_it(session: Session, net) -> None:
    with session_scope() as s:
        rate_card_create(s, user=None, data=RateCardIn(
            instrument_id=net.instrument.id, payer_class=PayerClass.academic, amount=6000,
            effective_from=NOV - timedelta(days=60),
        ))  # fmt: skip
        policy_set(
            s, user=None, lab_code=net.lab.code, data=ChargingPolicyIn(basis=ChargeBasis.used)
        )
    kiosk_only = book(session, instrument=net.instrument, user=net.researcher, minutes=120,
                      status=BookingStatus.confirmed)  # fmt: skip
    both = book(session, instrument=net.instrument, user=net.researcher2,
                start=NOV + timedelta(hours=3), minutes=120, status=BookingStatus.confirmed)  # fmt: skip
    with session_scope() as s:
        check_in(
            s, instrument_id=net.instrument.id, user=net.researcher, now=NOV + timedelta(minutes=5)
        )
    with session_scope() as s:
        check_out(
            s, instrument_id=net.instrument.id, user=net.researcher, now=NOV + timedelta(minutes=95)
        )
    at = NOV + timedelta(hours=3)
    with session_scope() as s:
        check_in(
            s,
            instrument_id=net.instrument.id,
            user=net.researcher2,
            pin=booking_pin(both.id),
            now=at,
        )
    with session_scope() as s:
        check_out(
            s,
            instrument_id=net.instrument.id,
            user=net.researcher2,
            now=at + timedelta(minutes=100),
        )
    use(
        session, instrument=net.instrument, user=net.researcher2, start=at, minutes=40, booking=both
    )
    with session_scope() as s:
        usage_reconcile(s, now=NOV + timedelta(days=1), since=NOV - timedelta(days=1))
    session.expire_all()
    assert session.get(Booking, kiosk_only.id).status == BookingStatus.completed
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    session.rollback()  # a fresh snapshot (SQLite's reader kept the one before the run)
    charges = {c.source_id: c for c in session.exec(select(Charge)).all()}
    assert charges[kiosk_only.id].quantity == 90  # the kiosk's 90 minutes, by the used basis
    assert charges[both.id].quantity == 40  # the gateway's 40, not the kiosk's 100
    # The network's figures (and the sharing assessment) count the same way: 90 + 40.
    from admin.figures import usage
    from core.periods import Period

    figures = usage(session, Period.parse("2026-11"))[net.instrument.id]
    assert (figures.sessions, figures.used_seconds) == (2, (90 + 40) * 60)


def test_an_operator_records_use_by_hand(client: TestClient, session: Session, net) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    past = _booking(session, net.instrument.id, net.researcher.id, now - timedelta(hours=3), 60)
    url = f"/api/v1/instruments/{net.instrument.id}/usage"
    body = {"start": (now - timedelta(hours=3)).isoformat(), "end": (now - timedelta(hours=2)).isoformat(),
            "booking_id": past.id, "reason": ""}  # fmt: skip
    manager = auth(net.manager)
    assert client.post(url, json=body, headers=manager).status_code == 422
    body["reason"] = "the gateway PC was off"
    assert client.post(url, json=body, headers=auth(net.researcher)).status_code == 403
    r = client.post(url, json=body, headers=manager)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "manual" and r.json()["note"] == "the gateway PC was off"
    ahead = {**body, "end": (now + timedelta(hours=2)).isoformat()}
    assert client.post(url, json=ahead, headers=manager).status_code == 422
    walk_up = {**body, "booking_id": None, "person_email": net.researcher2.email}
    r = client.post(url, json=walk_up, headers=manager)
    assert r.status_code == 201 and r.json()["kind"] == "walk_up"


def test_a_booking_nobody_checks_into_goes_to_the_waitlist(session: Session, net) -> None:
    lab = session.get(Lab, net.lab.id)
    lab.release_unchecked_minutes = 15
    session.add(lab)
    session.commit()
    # Whole hours, on the instruments' slot grid; the pass runs 20 minutes into the booking.
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    now = base + timedelta(minutes=20)
    idle = _booking(session, net.instrument.id, net.researcher.id, base, 180)
    entry = WaitlistEntry(
        instrument_id=net.instrument.id, user_id=net.researcher2.id,
        start_at=base + timedelta(hours=2), end_at=base + timedelta(hours=3),
    )  # fmt: skip
    session.add(entry)
    session.commit()
    with session_scope() as s:
        result = usage_reconcile(s, now=now)
    assert result.released == 1
    session.expire_all()
    assert session.get(Booking, idle.id).status == BookingStatus.no_show
    entry = session.get(WaitlistEntry, entry.id)
    assert entry.status == WaitlistStatus.booked
    handed = session.get(Booking, entry.booking_id)
    assert handed.user_id == net.researcher2.id and handed.status == BookingStatus.confirmed
    told = session.exec(
        select(Notification.kind).where(Notification.user_id == net.researcher.id)
    ).all()
    assert "booking_released" in told
    # A booking someone checked into stays.
    used = _booking(session, net.instrument.id, net.founder.id, base + timedelta(hours=4), 60)
    with session_scope() as s:
        check_in(
            s,
            instrument_id=net.instrument.id,
            user=net.founder,
            now=base + timedelta(hours=4, minutes=1),
        )
    with session_scope() as s:
        usage_reconcile(s, now=base + timedelta(hours=4, minutes=30))
    session.expire_all()
    assert session.get(Booking, used.id).status == BookingStatus.confirmed
    sessions = session.exec(
        select(UsageSession).where(col(UsageSession.booking_id) == used.id)
    ).all()
    assert [u.source for u in sessions] == [UsageSource.kiosk]


def test_a_training_sessions_hold_is_never_charged_nor_released(session: Session, net) -> None:
    from booking.training import training_session_create
    from core.models import User

    with session_scope() as s:
        rate_card_create(s, user=None, data=RateCardIn(
            instrument_id=net.instrument.id, payer_class=PayerClass.academic, amount=6000,
            effective_from=NOV - timedelta(days=60),
        ))  # fmt: skip
    with session_scope() as s:
        manager = s.get(User, net.manager.id)
        held = training_session_create(
            s, user=manager, title="Basics", start=NOV, end=NOV + timedelta(hours=2),
            capacity=2, instrument_id=net.instrument.id, now=NOV - timedelta(days=1),
        )  # fmt: skip
        hold_id = held.booking_id
    lab = session.get(Lab, net.lab.id)
    lab.release_unchecked_minutes = 10
    session.add(lab)
    session.commit()
    with session_scope() as s:
        assert usage_reconcile(s, now=NOV + timedelta(minutes=30)).released == 0
    with session_scope() as s:
        usage_reconcile(s, now=NOV + timedelta(days=1), since=NOV - timedelta(days=1))
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    session.rollback()
    assert session.get(Booking, hold_id).status == BookingStatus.completed
    assert session.exec(select(Charge).where(Charge.source_id == hold_id)).all() == []


def test_a_booker_who_has_not_checked_in_is_nudged_once(session: Session, net) -> None:
    from booking.reminders import reminders_due

    now = datetime.now(UTC).replace(microsecond=0)
    lab = session.get(Lab, net.lab.id)
    lab.release_unchecked_minutes = 20
    session.add(lab)
    session.commit()
    late = _booking(session, net.instrument.id, net.researcher.id, now - timedelta(minutes=10), 60)
    other = create_instrument(session, lab=net.lab)
    present = _booking(session, other.id, net.researcher2.id, now - timedelta(minutes=10), 60)
    with session_scope() as s:
        check_in(s, instrument_id=other.id, user=net.researcher2, now=now - timedelta(minutes=8))
    for _ in range(2):
        with session_scope() as s:
            reminders_due(s, now=now)
    session.rollback()
    nudges = session.exec(
        select(Notification).where(Notification.kind == "reminder_check_in")
    ).all()
    assert [n.booking_id for n in nudges] == [late.id]
    assert booking_pin(late.id) in nudges[0].body and "20" in nudges[0].body
    assert present.id is not None
