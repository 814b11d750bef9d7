# ruff: noqa: RUF001  (the pages write time ranges with an en dash)
"""People using the pages in a real browser: find, book, be refused, take an alternative,
approve; on a phone and in Chinese too."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from booking import service as bookings
from booking.models import Booking, BookingStatus
from booking.schemas import BookingCreate
from core.models import Role
from core.settings import get_settings
from tests.e2e.conftest import Shots
from tests.factories import PASSWORD, create_instrument, create_lab, create_user

pytest.importorskip("playwright.sync_api")


def _wait_for(page, expression: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until `expression` is true in the page. Playwright's wait_for_function evaluates
    its string with eval(), which the pages' Content-Security-Policy rightly refuses;
    page.evaluate goes through the debugger protocol instead."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)


def _day() -> str:
    """Two days ahead in the network's zone: inside every rule's lead time and horizon."""
    return str((datetime.now(get_settings().zone) + timedelta(days=2)).date())


def _sign_in(page, base: str, email: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _show_day(page, day: str) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(f"window.labshareCalendar.gotoDate('{day}')")
    page.locator(f'.fc-timegrid-col[data-date="{day}"]').wait_for()


def _drag(page, day: str, start: str, last_slot: str) -> None:  # type: ignore[no-untyped-def]
    """Drag down the day's column from the `start` slot to the end of `last_slot`."""
    first = page.locator(f'.fc-timegrid-slot-lane[data-time="{start}:00"]')
    first.evaluate("el => el.scrollIntoView({block: 'center'})")
    column = page.locator(f'.fc-timegrid-col[data-date="{day}"]').bounding_box()
    top = page.locator(f'.fc-timegrid-slot-lane[data-time="{start}:00"]').bounding_box()
    bottom = page.locator(f'.fc-timegrid-slot-lane[data-time="{last_slot}:00"]').bounding_box()
    x = column["x"] + column["width"] / 2
    page.mouse.move(x, top["y"] + 3)
    page.mouse.down()
    page.mouse.move(x, top["y"] + 12, steps=3)
    page.mouse.move(x, bottom["y"] + bottom["height"] - 3, steps=8)
    page.mouse.up()


def test_researcher_books_is_refused_and_takes_an_alternative(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    lab = create_lab(session, name="Mass Spectrometry Centre")
    wanted = create_instrument(
        session,
        lab=lab,
        name="Orbitrap Exploris 480",
        manufacturer="Thermo",
        model="Exploris 480",
        location="Building B, room 214",
    )
    create_instrument(session, lab=lab, name="Orbitrap Exploris 240", manufacturer="Thermo")
    create_instrument(session, name="Cryo-EM Krios G4")
    alice = create_user(session, email="alice@example.org")
    bob = create_user(session, email="bob@example.org")
    day = _day()
    zone = get_settings().zone
    taken_start = datetime.fromisoformat(f"{day}T10:00").replace(tzinfo=zone)
    bookings.booking_create(
        session,
        user=alice,
        data=BookingCreate(
            instrument_id=wanted.id,
            start=taken_start,
            end=taken_start + timedelta(hours=1),
            purpose="alice's run",
        ),
    )
    session.commit()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    page.goto(live_server + "/")
    page.get_by_label("Search").fill("orbitrap")
    page.get_by_role("button", name="Search").click()
    assert page.get_by_role("link", name="Orbitrap Exploris 240").is_visible()
    assert page.get_by_text("Cryo-EM Krios G4").count() == 0
    shots(page, "search")

    page.get_by_role("link", name="Orbitrap Exploris 480").click()
    page.get_by_role("link", name="Sign in to book").click()
    _sign_in(page, live_server, bob.email)
    page.wait_for_url(f"**/instruments/{wanted.id}")
    assert page.get_by_text("Building B, room 214").is_visible()
    _show_day(page, day)
    # Alice's booking shows as busy (times drawn in the network's zone, not the browser's).
    busy = page.locator(".fc-event.ev-booking")
    busy.first.wait_for()
    assert "10:00" in busy.first.inner_text()
    shots(page, "instrument-week")

    _drag(page, day, "14:00", "14:30")
    assert page.locator("#start").input_value() == f"{day}T14:00"
    assert page.locator("#end").input_value() == f"{day}T15:00"
    page.get_by_label("Purpose").fill("phosphoproteomics")
    page.get_by_role("button", name="Book", exact=True).click()
    page.locator("#booked").wait_for()
    assert "14:00–15:00" in page.locator("#booked").inner_text()
    # The new booking shows as his own, and the form is cleared for the next one.
    _wait_for(page, "document.querySelectorAll('.fc-event.ev-mine').length >= 1")
    assert "14:00" in page.locator(".fc-event.ev-mine").first.inner_text()
    assert page.locator("#start").input_value() == ""
    shots(page, "booked")

    _drag(page, day, "10:00", "10:30")
    page.get_by_role("button", name="Book", exact=True).click()
    refusal = page.locator("#refused")
    refusal.wait_for()
    assert "That time cannot be booked." in refusal.inner_text()
    assert f"It overlaps another booking {day} 10:00–11:00." in refusal.inner_text()
    assert "alice" not in page.locator("#booking-result").inner_text().lower()
    offers = page.locator("#alternatives button.alternative")
    assert offers.count() >= 2
    assert page.get_by_role("button", name="Join the waitlist for this time").is_visible()
    shots(page, "refused-with-alternatives")

    chosen = offers.first.inner_text()
    offers.first.click()
    page.locator("#booked").wait_for()
    shots(page, "took-alternative")
    assert chosen.removeprefix("Book ").split(" ")[1] in page.locator("#booked").inner_text()

    page.get_by_role("link", name="See my bookings").click()
    assert page.get_by_role("heading", name="My bookings").is_visible()
    assert page.locator("#feed-url").input_value().endswith(".ics")
    shots(page, "my-bookings")

    # Cancel the first one from the list, by keyboard. It asks first: saying no keeps it.
    row = page.locator("table tbody tr[id^=booking-]").first
    row.locator("summary").focus()
    page.keyboard.press("Enter")
    questions: list[str] = []

    def answer(dialog, accept: bool) -> None:  # type: ignore[no-untyped-def]
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    row.get_by_role("button", name="Cancel booking").focus()
    page.keyboard.press("Enter")
    assert questions and questions[0].startswith("Cancel this booking?")
    assert page.get_by_role("heading", name="Coming up").is_visible()
    page.once("dialog", lambda d: answer(d, True))
    row.get_by_role("button", name="Cancel booking").focus()
    page.keyboard.press("Enter")
    page.get_by_text("The booking is cancelled.").wait_for()
    # The cancelled booking left "Coming up" for a list of its own.
    assert page.locator("h2", has_text="Cancelled, rejected or displaced").is_visible()
    shots(page, "cancelled")
    context.close()

    session.rollback()
    mine = session.exec(
        select(Booking).where(Booking.user_id == bob.id).order_by(col(Booking.start_at))
    ).all()
    assert sorted(b.status for b in mine) == [BookingStatus.cancelled, BookingStatus.confirmed]


def test_lab_manager_approves(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    lab = create_lab(session, name="Structural Biology Lab")
    instrument = create_instrument(
        session, lab=lab, name="Bruker Avance NEO 800", approval_required=True
    )
    manager = create_user(session, role=Role.lab_manager, lab=lab, email="chen@example.org")
    researcher = create_user(session, email="wang@example.org")
    day = _day()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/instruments/{instrument.id}")
    _sign_in(page, live_server, researcher.email)
    page.wait_for_url(f"**/instruments/{instrument.id}")
    page.get_by_label("Start").fill(f"{day}T09:00")
    page.get_by_label("End").fill(f"{day}T11:00")
    page.get_by_label("Purpose").fill("protein NMR")
    page.get_by_role("button", name="Book", exact=True).click()
    page.locator("#booked").wait_for()
    assert "the lab will approve" in page.locator("#booked").inner_text()
    context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/lab")
    _sign_in(page, live_server, manager.email)
    page.wait_for_url("**/lab")
    row = page.locator("#pending tbody tr").first
    assert "wang@example.org" in row.inner_text() and "protein NMR" in row.inner_text()
    shots(page, "pending")
    row.get_by_role("button", name="Approve").click()
    page.get_by_text("Approved.").wait_for()
    assert "Nothing is waiting." in page.locator("#pending").inner_text()
    shots(page, "approved")
    page.locator("#board").get_by_role("link", name="Edit").click()
    page.get_by_role("heading", name="Opening hours").wait_for()
    shots(page, "instrument-editor")
    context.close()

    session.rollback()
    booking = session.exec(select(Booking)).one()
    assert booking.status == BookingStatus.confirmed
    assert booking.decided_by_id == manager.id


def test_a_manager_fixes_bad_opening_hours_in_place(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Titan Krios")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/lab/instruments/{instrument.id}")
    _sign_in(page, live_server, manager.email)
    page.wait_for_url(f"**/lab/instruments/{instrument.id}")
    # Tuesday closes before it opens: typed by mistake.
    page.locator("#opens1_1").fill("17:00")
    page.locator("#closes1_1").fill("09:00")
    page.get_by_role("button", name="Save opening hours").click()
    error = page.locator("#hours-error")
    error.wait_for()
    assert "opens must be before closes" in error.inner_text()
    assert page.locator("#opens1_1").input_value() == "17:00"  # what was typed is kept
    assert page.get_by_text("Not saved.").is_visible()
    shots(page, "hours-refused-in-place")
    page.locator("#opens1_1").fill("09:00")
    page.locator("#closes1_1").fill("17:00")
    page.get_by_role("button", name="Save opening hours").click()
    page.get_by_text("Saved.").wait_for()
    assert page.locator("#opens1_1").input_value() == "09:00"
    context.close()


def test_a_displaced_booking_is_rebooked_in_one_click(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    from booking.blackouts import blackout_create
    from booking.schemas import BlackoutCreate

    lab = create_lab(session, name="Cryo-EM Facility")
    krios = create_instrument(session, lab=lab, name="Krios G4")
    create_instrument(session, lab=lab, name="Glacios")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    li = create_user(session, email="li@example.org")
    day = _day()
    start = datetime.fromisoformat(f"{day}T10:00").replace(tzinfo=get_settings().zone)
    bookings.booking_create(
        session,
        user=li,
        data=BookingCreate(instrument_id=krios.id, start=start, end=start + timedelta(hours=2)),
    )
    blackout_create(
        session,
        user=manager,
        instrument_id=krios.id,
        data=BlackoutCreate(start=start - timedelta(hours=1), end=start + timedelta(hours=4),
                            kind="maintenance", reason="autoloader repair"),
    )  # fmt: skip
    session.commit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/me/bookings")
    _sign_in(page, live_server, li.email)
    page.wait_for_url("**/me/bookings")
    why = page.locator("[id^=why-]").first
    assert "autoloader repair" in why.inner_text()
    shots(page, "displaced-with-reason")
    why.locator("button.rebook").first.click()
    page.get_by_text("Booked.").wait_for()
    shots(page, "rebooked")
    context.close()
    session.rollback()
    mine = session.exec(select(Booking).where(Booking.user_id == li.id)).all()
    assert sorted(b.status for b in mine) == [BookingStatus.confirmed, BookingStatus.displaced]


def test_a_time_typed_in_a_later_week_turns_the_calendar_to_it(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    """Booked by typing a date two weeks on, the booking shows: the calendar had stayed on
    this week, where nothing changed, and left the person wondering."""
    nmr = create_instrument(session, name="NMR 600")
    ming = create_user(session, email="ming@example.org")
    session.commit()
    later = str((datetime.now(get_settings().zone) + timedelta(days=14)).date())
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/instruments/{nmr.id}")
    _sign_in(page, live_server, ming.email)
    page.wait_for_url(f"**/instruments/{nmr.id}")
    page.locator(".fc-timegrid-col").first.wait_for()
    assert page.locator(f'.fc-timegrid-col[data-date="{later}"]').count() == 0
    page.locator("#start").fill(f"{later}T09:00")
    page.locator("#end").fill(f"{later}T10:00")
    page.get_by_role("button", name="Book", exact=True).click()
    page.locator("#booked").wait_for()
    page.locator(f'.fc-timegrid-col[data-date="{later}"]').wait_for()
    _wait_for(page, "document.querySelectorAll('.fc-event.ev-mine').length >= 1")
    assert "09:00" in page.locator(".fc-event.ev-mine").first.inner_text()
    shots(page, "booked-a-later-week")
    context.close()


def test_an_admin_opens_the_dashboard_with_its_figures(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    admin = create_user(session, role=Role.network_admin)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/admin")
    _sign_in(page, live_server, admin.email)
    page.wait_for_url("**/admin")
    # The figures arrive: the cards fill and no error shows (speed is bench/pages.py's).
    _wait_for(page, "document.querySelector('[data-kpi=instruments]').textContent !== '…'")
    assert page.locator("#dashboard-error").is_hidden()
    assert page.get_by_role("heading", name="Innovation vouchers").is_visible()
    shots(page, "dashboard")
    context.close()


def test_on_a_phone_in_chinese(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    instrument = create_instrument(session, name="Orbitrap Exploris 480", location="B214")
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    page = context.new_page()
    page.goto(live_server + "/")
    assert page.get_by_role("heading", name="查找仪器").is_visible()
    # Nothing is wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shots(page, "search-phone-zh")
    page.goto(f"{live_server}/instruments/{instrument.id}")
    page.locator(".fc-timegrid-col").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The day's hours are drawn: the phone's rule that makes wide tables scroll had made
    # the calendar's own tables blocks, and its grid collapsed to nothing.
    lane = page.locator(".fc-timegrid-slot-lane").first.bounding_box()
    assert lane is not None and lane["height"] >= 15, lane
    assert page.locator("#calendar").bounding_box()["height"] > 300
    shots(page, "instrument-phone-zh")
    # Switch to English with the header's button, by keyboard.
    page.get_by_role("button", name="English").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Orbitrap Exploris 480").wait_for()
    assert page.get_by_role("heading", name="Booking rules").is_visible()
    context.close()


def test_a_refusal_in_chinese_names_your_own_booking(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    instrument = create_instrument(session, name="NMR 600")
    wei = create_user(session, email="wei@example.org")
    day = _day()
    start = datetime.fromisoformat(f"{day}T10:00").replace(tzinfo=get_settings().zone)
    bookings.booking_create(
        session,
        user=wei,
        data=BookingCreate(
            instrument_id=instrument.id, start=start, end=start + timedelta(hours=2)
        ),
    )
    session.commit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/instruments/{instrument.id}")
    _sign_in(page, live_server, wei.email)
    page.wait_for_url(f"**/instruments/{instrument.id}")
    context.add_cookies([{"name": "labshare_lang", "value": "zh", "url": live_server}])
    page.reload()
    _show_day(page, day)
    page.locator(".fc-event.ev-mine").first.wait_for()  # drawn as hers
    page.locator("#start").fill(f"{day}T11:00")
    page.locator("#end").fill(f"{day}T12:00")
    page.get_by_role("button", name="预约", exact=True).click()
    refusal = page.locator("#refused")
    refusal.wait_for()
    assert f"与您自己的预约 {day} 10:00–12:00 重叠。" in refusal.inner_text()
    shots(page, "refused-own-booking-zh")
    context.close()


def test_keyboard_skip_link(
    browser,
    live_server: str,
    session: Session,  # type: ignore[no-untyped-def]
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(live_server + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    context.close()


def test_admin_previews_a_settlement(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    from tests.labshare.test_pages_admin import _network

    _network(session)
    admin = create_user(session, role=Role.network_admin, email="admin@example.org")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/signin?next=/admin/settlements")
    _sign_in(page, live_server, admin.email)
    page.wait_for_url("**/admin/settlements")
    page.get_by_label("Month").fill("2026-10")
    page.get_by_label("Note").fill("October preview")
    page.get_by_role("button", name="Run preview").click()
    page.wait_for_url("**/admin/settlements/*")
    assert page.locator("#settlement-status").inner_text() == "Preview"  # statuses read as words
    lines = page.locator("#settlement-lines").inner_text()
    assert "Northwest University" in lines
    shots(page, "settlement-preview")

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/admin/kpis" in r.url else None)
    page.goto(f"{live_server}/admin?period=2026-10")
    _wait_for(page, "document.querySelector('[data-kpi=instruments]').textContent !== '…'")
    _wait_for(page, "Chart.getChart('chart-trend') !== undefined")
    # The month's KPIs and the six-month trend: two requests, not one per month.
    assert sorted(u.split("/api/v1/admin/")[1] for u in asked) == [
        "kpis/trend?from=2026-05&to=2026-10",
        "kpis?period=2026-10",
    ]
    trend = page.evaluate("Chart.getChart('chart-trend').data.datasets[0].data")
    assert len(trend) == 6 and trend[-1] > 0
    assert chart_drawn(page, "chart-external") and chart_drawn(page, "chart-subsidy")
    shots(page, "dashboard")
    context.close()


def chart_drawn(page, canvas: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(page.evaluate(f"Chart.getChart('{canvas}') !== undefined"))
