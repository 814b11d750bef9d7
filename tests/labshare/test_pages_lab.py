# ruff: noqa: RUF001  (the pages write time ranges with an en dash)
"""A lab manager's pages: approve, edit rules and hours, add blackouts and see whom they hit."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from booking.models import Booking, BookingStatus
from core.models import Role
from core.settings import get_settings
from instruments.models import Instrument, OpeningHours
from tests.factories import create_instrument, create_lab, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def _day() -> str:
    return str((datetime.now(get_settings().zone) + timedelta(days=2)).date())


def _browser(client: TestClient, email: str) -> tuple[TestClient, str]:
    browser = TestClient(client.app)
    page_sign_in(browser, email)
    return browser, csrf_of(browser)


def test_manager_approves_a_pending_booking(client: TestClient, session: Session) -> None:
    lab = create_lab(session, name="Proteomics Core")
    instrument = create_instrument(session, lab=lab, name="timsTOF", approval_required=True)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    researcher = create_user(session, email="wei@example.org")
    day = _day()
    alice, token = _browser(client, researcher.email)
    asked = alice.post(
        f"/instruments/{instrument.id}/book",
        data={
            "start": f"{day}T10:00",
            "end": f"{day}T12:00",
            "purpose": "DIA run",
            "csrf_token": token,
        },
        headers={"HX-Request": "true"},
    )
    assert asked.status_code == 201 and "the lab will approve" in asked.text

    desk, mtoken = _browser(client, manager.email)
    page = desk.get("/lab")
    assert page.status_code == 200
    assert "Proteomics Core" in page.text and "wei@example.org" in page.text
    assert "DIA run" in page.text and f"{day} 10:00–12:00" in page.text
    booking = session.exec(select(Booking)).one()
    done = desk.post(
        f"/lab/bookings/{booking.id}/approve",
        data={"csrf_token": mtoken},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/lab?msg=approved"
    session.rollback()
    session.expire_all()
    assert session.get(Booking, booking.id).status == BookingStatus.confirmed
    assert "Nothing is waiting." in desk.get("/lab").text
    again = desk.post(f"/lab/bookings/{booking.id}/reject", data={"csrf_token": mtoken})
    assert again.status_code == 422 and "only a pending booking" in again.text


def test_only_lab_managers_use_the_desk(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    researcher = create_user(session)
    other_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    assert client.get("/lab", follow_redirects=False).status_code == 303
    browser, _ = _browser(client, researcher.email)
    assert browser.get("/lab").status_code == 403
    stranger, _ = _browser(client, other_manager.email)
    assert stranger.get(f"/lab/instruments/{instrument.id}").status_code == 403


def test_blackout_shows_whom_it_displaces(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Krios G4")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    researcher = create_user(session, email="li.na@example.org")
    day = _day()
    alice, token = _browser(client, researcher.email)
    alice.post(
        f"/instruments/{instrument.id}/book",
        data={"start": f"{day}T10:00", "end": f"{day}T11:00", "csrf_token": token},
    )
    desk, mtoken = _browser(client, manager.email)
    response = desk.post(
        f"/lab/instruments/{instrument.id}/blackouts",
        data={
            "start": f"{day}T09:00",
            "end": f"{day}T13:00",
            "kind": "maintenance",
            "reason": "cryo-cycle",
            "csrf_token": mtoken,
        },
    )
    assert response.status_code == 201
    assert "Blackout added." in response.text
    assert "li.na@example.org" in response.text.split('id="displaced"')[1]
    assert "cryo-cycle" in response.text
    session.rollback()
    session.expire_all()
    assert session.exec(select(Booking)).one().status == BookingStatus.displaced

    # The researcher sees why, and rebooks from the offers in one click.
    mine = alice.get("/me/bookings").text
    why = mine.split('id="why-', 1)[1].split("</div>", 1)[0]
    assert f"The lab blocked the instrument {day} 09:00–13:00." in why
    assert "Reason: cryo-cycle" in why
    start = why.split('name="start" value="', 1)[1].split('"', 1)[0]
    end = why.split('name="end" value="', 1)[1].split('"', 1)[0]
    target = why.split('action="/instruments/', 1)[1].split("/", 1)[0]
    rebooked = alice.post(
        f"/instruments/{target}/book", data={"start": start, "end": end, "csrf_token": token}
    )
    assert rebooked.status_code == 201, rebooked.text
    alice.cookies.set("labshare_lang", "zh")
    assert "原因：cryo-cycle" in alice.get("/me/bookings").text


def test_manager_edits_rules_and_opening_hours(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="NMR 800")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    desk, token = _browser(client, manager.email)
    url = f"/lab/instruments/{instrument.id}"
    assert "NMR 800" in desk.get(url).text
    rules = {
        "name": "NMR 800 MHz",
        "status": "active",
        "slot_step_minutes": "60",
        "min_minutes": "60",
        "max_minutes": "480",
        "lead_minutes": "120",
        "horizon_days": "60",
        "approval_required": "true",
        "csrf_token": token,
    }
    saved = desk.post(url, data=rules, follow_redirects=False)
    assert saved.status_code == 303
    bad = desk.post(url, data={**rules, "min_minutes": "90"})
    assert bad.status_code == 422 and "multiples of slot_step_minutes" in bad.text

    hours = {
        "opens1_0": "08:00",
        "closes1_0": "12:00",
        "opens2_0": "13:00",
        "closes2_0": "18:00",
        "opens1_5": "09:00",
        "closes1_5": "24:00",
        "csrf_token": token,
    }
    assert desk.post(f"{url}/hours", data=hours, follow_redirects=False).status_code == 303
    overlapping = desk.post(f"{url}/hours", data={**hours, "opens2_0": "11:00"})
    assert overlapping.status_code == 409
    half = desk.post(f"{url}/hours", data={"opens1_1": "08:00", "csrf_token": token})
    assert half.status_code == 422

    session.rollback()
    session.expire_all()
    edited = session.get(Instrument, instrument.id)
    assert (edited.name, edited.slot_step_minutes, edited.approval_required) == (
        "NMR 800 MHz",
        60,
        True,
    )
    rows = session.exec(
        select(OpeningHours).where(OpeningHours.instrument_id == instrument.id)
    ).all()
    assert sorted((r.weekday, r.opens, r.closes) for r in rows) == [
        (0, time(8), time(12)),
        (0, time(13), time(18)),
        (5, time(9), time(23, 59, 59)),
    ]
    public = client.get(f"/instruments/{instrument.id}").text
    assert "<td>08:00–12:00, 13:00–18:00</td>" in public  # Monday's two intervals
    assert "<td>09:00–24:00</td>" in public  # Saturday, to the end of the day


def test_a_refused_change_is_shown_beside_its_form_with_what_was_typed(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="Cryo-EM")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    desk, token = _browser(client, manager.email)
    url = f"/lab/instruments/{instrument.id}"

    backwards = desk.post(
        f"{url}/hours", data={"opens1_2": "17:00", "closes1_2": "09:00", "csrf_token": token}
    )
    assert backwards.status_code == 422
    page = backwards.text
    assert "Cryo-EM" in page and "Sorry" not in page  # the edit page, not a dead end
    assert 'id="hours-error"' in page and "opens must be before closes" in page
    assert 'name="opens1_2" value="17:00"' in page and 'name="closes1_2" value="09:00"' in page

    price = desk.post(
        f"{url}/rates",
        data={"payer_class": "company", "unit": "hour", "amount": "12,5x", "csrf_token": token},
    )
    assert price.status_code == 422 and 'id="rates-error"' in price.text
    assert 'value="12,5x" aria-invalid="true"' in price.text
    assert '<option value="company" selected>' in price.text
    # Amounts Decimal reads but money cannot be (were 500s), each refused with its field.
    for amount in ("NaN", "Infinity", "-inf", "1e400"):
        odd = desk.post(
            f"{url}/rates",
            data={"payer_class": "company", "unit": "hour", "amount": amount, "csrf_token": token},
        )
        assert odd.status_code == 422 and 'id="rates-error"' in odd.text, (amount, odd.text)

    # A granted qualification's email the schema refuses (was a 500).
    for email in ("not-an-email", "-1", ""):
        grant = desk.post(f"{url}/qualifications", data={"email": email, "csrf_token": token})
        assert grant.status_code == 422, (email, grant.text)
        assert "email" in grant.text

    rules = {
        "name": "Cryo-EM Krios",
        "status": "active",
        "slot_step_minutes": "30",
        "min_minutes": "60",
        "max_minutes": "30",
        "lead_minutes": "0",
        "horizon_days": "30",
        "csrf_token": token,
    }
    desk.cookies.set("labshare_lang", "zh")
    refused = desk.post(url, data=rules)
    assert refused.status_code == 422 and 'id="details-error"' in refused.text
    assert "最长时长不能小于最短时长" in refused.text  # the validator's message, in Chinese
    assert 'value="Cryo-EM Krios"' in refused.text  # the typed name is kept
    session.rollback()
    session.expire_all()
    assert session.get(Instrument, instrument.id).name == "Cryo-EM"  # nothing was saved


def test_manager_imports_a_calendar(client: TestClient, session: Session) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    researcher = create_user(session)
    day = _day()
    alice, token = _browser(client, researcher.email)
    alice.post(
        f"/instruments/{instrument.id}/book",
        data={"start": f"{day}T10:00", "end": f"{day}T11:00", "csrf_token": token},
    )
    compact = day.replace("-", "")
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//lab//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:service-1@lab\r\nDTSTAMP:{compact}T000000Z\r\n"
        f"DTSTART;TZID=Asia/Shanghai:{compact}T093000\r\n"
        f"DTEND;TZID=Asia/Shanghai:{compact}T103000\r\nSUMMARY:Service\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    desk, mtoken = _browser(client, manager.email)
    url = f"/lab/instruments/{instrument.id}/calendars"
    imported = desk.post(
        url,
        data={"csrf_token": mtoken},
        files={"file": ("lab.ics", ics.encode(), "text/calendar")},
        follow_redirects=False,
    )
    assert imported.status_code == 303, imported.text
    page = desk.get(imported.headers["location"])
    assert "1 busy events imported; 1 bookings displaced." in page.text
    assert "uploaded file" in page.text
    session.rollback()
    session.expire_all()
    assert session.exec(select(Booking)).one().status == BookingStatus.displaced
    broken = desk.post(
        url,
        data={"csrf_token": mtoken},
        files={"file": ("x.ics", b"not a calendar", "text/calendar")},
    )
    assert broken.status_code == 422
    no_token = desk.post(url, files={"file": ("lab.ics", ics.encode(), "text/calendar")})
    assert no_token.status_code == 403


def test_the_desk_searches_and_pages_the_labs_instruments_and_shows_utilisation(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    for n in range(30):
        create_instrument(session, lab=lab, name=f"Microscope {n:02d}")
    special = create_instrument(session, lab=lab, name="Raman alpha300")
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    researcher = create_user(session)
    desk, _ = _browser(client, manager.email)

    board = desk.get("/lab/status").text
    assert "31 instruments" in board and "Page 1 of 2" in board
    assert "Microscope 00" in board and "Raman alpha300" not in board  # by name, 25 a page
    second = desk.get("/lab/status", params={"page": 2}).text
    assert "Raman alpha300" in second
    found = desk.get("/lab", params={"q": "raman"}).text
    assert 'hx-get="/lab/status?q=raman' in found  # the refresh keeps the search
    assert "Raman alpha300" in desk.get("/lab/status", params={"q": "raman"}).text

    # Two hours booked yesterday: booked against used, per instrument.
    now = datetime.now(get_settings().zone)
    start = (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    session.add(
        Booking(
            instrument_id=special.id,
            user_id=researcher.id,
            start_at=start,
            end_at=start + timedelta(hours=2),
            status=BookingStatus.completed,
        )
    )
    session.commit()
    usage = desk.get("/lab/usage").text
    row = usage.split('id="utilisation"', 1)[1].split("Raman alpha300", 1)[1].split("</tr>", 1)[0]
    assert "2.0 h" in row and "0.0 h" in row


def test_the_labs_actions_are_in_the_audit_log_in_words(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab, name="FIB-SEM", approval_required=True)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    researcher = create_user(session)
    admin = create_user(session, role=Role.network_admin)
    day = _day()
    alice, token = _browser(client, researcher.email)
    alice.post(
        f"/instruments/{instrument.id}/book",
        data={"start": f"{day}T10:00", "end": f"{day}T11:00", "csrf_token": token},
    )
    booking = session.exec(select(Booking)).one()
    desk, mtoken = _browser(client, manager.email)
    url = f"/lab/instruments/{instrument.id}"
    desk.post(f"/lab/bookings/{booking.id}/approve", data={"csrf_token": mtoken})
    desk.post(
        f"{url}/hours", data={"opens1_0": "09:00", "closes1_0": "17:00", "csrf_token": mtoken}
    )
    desk.post(
        f"{url}/blackouts",
        data={
            "start": f"{day}T12:00",
            "end": f"{day}T13:00",
            "reason": "service",
            "csrf_token": mtoken,
        },
    )
    desk.post(
        f"{url}/rates",
        data={"payer_class": "academic", "unit": "hour", "amount": "250", "csrf_token": mtoken},
    )
    office, _ = _browser(client, admin.email)
    log = office.get("/admin/audit").text
    for words in ("Approved a booking", "Changed opening hours", "Blocked an instrument",
                  "Set a price"):  # fmt: skip
        assert words in log, words
    assert "Mon 09:00-17:00" in log  # the hours after the change
