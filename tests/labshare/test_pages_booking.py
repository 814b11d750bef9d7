# ruff: noqa: RUF001  (the pages write time ranges with an en dash)
"""Booking pages: book, be refused with alternatives, take one, wait, move and cancel."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from booking.models import Booking, BookingStatus, WaitlistEntry
from core.settings import get_settings
from tests.factories import create_instrument, create_lab, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in

HTMX = {"HX-Request": "true"}


def _day_after_tomorrow() -> str:
    return str((datetime.now(get_settings().zone) + timedelta(days=2)).date())


def _client_for(client: TestClient, email: str) -> tuple[TestClient, str]:
    browser = TestClient(client.app)
    page_sign_in(browser, email)
    return browser, csrf_of(browser)


def test_book_refused_then_take_an_alternative(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    wanted = create_instrument(session, lab=lab, name="Orbitrap A")
    create_instrument(session, lab=lab, name="Orbitrap B")
    first = create_user(session)
    second = create_user(session)
    day = _day_after_tomorrow()
    slot = {"start": f"{day}T10:00", "end": f"{day}T11:00", "purpose": "proteomics"}

    alice, token = _client_for(client, first.email)
    booked = alice.post(
        f"/instruments/{wanted.id}/book", data={**slot, "csrf_token": token}, headers=HTMX
    )
    assert booked.status_code == 201, booked.text
    assert "Booked." in booked.text and f"{day} 10:00–11:00" in booked.text
    # The calendar redraws, and turns to the booking's week if it shows another.
    changed = json.loads(booked.headers["HX-Trigger"])["booking-changed"]
    began = datetime.fromisoformat(changed["start"])
    assert began == datetime.fromisoformat(f"{day}T10:00").replace(tzinfo=get_settings().zone)

    bob, token = _client_for(client, second.email)
    refused = bob.post(
        f"/instruments/{wanted.id}/book", data={**slot, "csrf_token": token}, headers=HTMX
    )
    assert refused.status_code == 409
    assert "That time cannot be booked." in refused.text
    assert f"It overlaps another booking {day} 10:00–11:00." in refused.text
    assert first.email not in refused.text  # conflicts name nobody
    assert "Orbitrap B" in refused.text and lab.name in refused.text  # told apart by lab
    offers = re.findall(
        r'action="/instruments/(\d+)/book".*?name="start" value="([^"]+)".*?name="end" value="([^"]+)"',
        refused.text,
        re.S,
    )
    assert offers, refused.text
    assert "Join the waitlist for this time" in refused.text
    other_instrument = [o for o in offers if int(o[0]) != wanted.id]
    assert other_instrument, "the same time on an equivalent instrument is offered"
    target, start, end = other_instrument[0]
    taken = bob.post(
        f"/instruments/{target}/book",
        data={"start": start, "end": end, "purpose": "proteomics", "csrf_token": token},
        headers=HTMX,
    )
    assert taken.status_code == 201, taken.text
    session.rollback()  # a fresh snapshot: see what the app committed
    session.expire_all()
    mine = session.exec(select(Booking).where(Booking.user_id == second.id)).all()
    assert [(b.instrument_id, b.status) for b in mine] == [(int(target), BookingStatus.confirmed)]


def test_a_refusal_says_the_time_is_your_own_booking_in_chinese(
    client: TestClient, session: Session
) -> None:
    instrument = create_instrument(session)
    user = create_user(session)
    browser, token = _client_for(client, user.email)
    day = _day_after_tomorrow()
    slot = {"start": f"{day}T10:00", "end": f"{day}T12:00", "csrf_token": token}
    assert browser.post(f"/instruments/{instrument.id}/book", data=slot).status_code == 201
    again = {**slot, "start": f"{day}T11:00", "end": f"{day}T13:00"}
    english = browser.post(f"/instruments/{instrument.id}/book", data=again, headers=HTMX)
    assert english.status_code == 409
    assert f"It overlaps your own booking {day} 10:00–12:00." in english.text
    browser.cookies.set("labshare_lang", "zh")
    chinese = browser.post(f"/instruments/{instrument.id}/book", data=again, headers=HTMX)
    assert f"与您自己的预约 {day} 10:00–12:00 重叠。" in chinese.text
    assert "the time is not free" not in chinese.text


def test_without_javascript_a_refusal_is_a_whole_page(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    user = create_user(session)
    browser, token = _client_for(client, user.email)
    day = _day_after_tomorrow()
    response = browser.post(
        f"/instruments/{instrument.id}/book",
        data={"start": f"{day}T10:00", "end": f"{day}T09:00", "csrf_token": token},
    )
    assert response.status_code == 422
    assert "<html" in response.text and "end must be after start" in response.text


def test_signed_out_booking_goes_to_sign_in(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    token = csrf_of(client)
    response = client.post(
        f"/instruments/{instrument.id}/book",
        data={"start": "2030-01-01T10:00", "end": "2030-01-01T11:00", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin?next=")


def test_waitlist_move_and_cancel(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session, name="Krios")
    holder = create_user(session)
    waiter = create_user(session)
    day = _day_after_tomorrow()
    slot = {"start": f"{day}T14:00", "end": f"{day}T15:00"}

    alice, alice_token = _client_for(client, holder.email)
    assert alice.post(
        f"/instruments/{instrument.id}/book", data={**slot, "csrf_token": alice_token}
    ).status_code in (200, 201)
    bob, bob_token = _client_for(client, waiter.email)
    waited = bob.post(
        f"/instruments/{instrument.id}/waitlist",
        data={**slot, "csrf_token": bob_token},
        headers=HTMX,
    )
    assert waited.status_code == 200 and "on the waitlist" in waited.text
    assert "Krios" in bob.get("/me/bookings").text

    page = alice.get("/me/bookings").text
    assert "Krios" in page and f"{day} 14:00–15:00" in page and "/ical/users/" in page
    booking = session.exec(select(Booking).where(Booking.user_id == holder.id)).one()
    etag = re.search(r'name="etag" value="([^"]+)"', page).group(1).replace("&#34;", '"')
    moved = alice.post(
        f"/me/bookings/{booking.id}/move",
        data={
            "start": f"{day}T16:00",
            "end": f"{day}T17:00",
            "etag": etag,
            "csrf_token": alice_token,
        },
        follow_redirects=False,
    )
    assert moved.status_code == 303 and "msg=moved" in moved.headers["location"]
    stale = alice.post(
        f"/me/bookings/{booking.id}/move",
        data={
            "start": f"{day}T18:00",
            "end": f"{day}T19:00",
            "etag": etag,
            "csrf_token": alice_token,
        },
    )
    assert stale.status_code == 412

    # Moving away freed 14:00: the waitlist got it.
    session.rollback()  # a fresh snapshot: see what the app committed
    session.expire_all()
    entry = session.exec(select(WaitlistEntry).where(WaitlistEntry.user_id == waiter.id)).one()
    assert entry.status == "booked"

    cancelled = alice.post(
        f"/me/bookings/{booking.id}/cancel",
        data={"csrf_token": alice_token},
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    session.rollback()  # a fresh snapshot: see what the app committed
    session.expire_all()
    assert session.get(Booking, booking.id).status == BookingStatus.cancelled
    assert "The booking is cancelled." in alice.get("/me/bookings?msg=cancelled").text
    # Someone else's booking is not mine to cancel.
    assert (
        bob.post(f"/me/bookings/{booking.id}/cancel", data={"csrf_token": bob_token}).status_code
        == 404
    )


def test_calendar_feed_link_can_be_renewed(client: TestClient, session: Session) -> None:
    user = create_user(session)
    browser, token = _client_for(client, user.email)
    old = re.search(r'id="feed-url" value="([^"]+)"', browser.get("/me/bookings").text).group(1)
    assert old.endswith(f"/ical/users/{user.feed_token}.ics")
    assert browser.get(old.replace("http://testserver", "")).status_code == 200
    renewed = browser.post("/me/feed/rotate", data={"csrf_token": token}, follow_redirects=False)
    assert renewed.status_code == 303
    page = browser.get(renewed.headers["location"])
    new = re.search(r'id="feed-url" value="([^"]+)"', page.text).group(1)
    assert new != old and "new link" in page.text
    assert browser.get(old.replace("http://testserver", "")).status_code == 404
