"""Importing a lab's .ics as busy time through the API: expansion, idempotence, refusals."""

from __future__ import annotations

from datetime import datetime

import icalendar
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from booking.calendars.models import CalendarSource
from booking.models import Booking, BookingStatus
from booking.notifications.models import Notification
from core.models import Role
from core.settings import get_settings
from instruments.models import Blackout, BlackoutKind
from tests.booking.helpers import at, body, day
from tests.factories import auth, create_instrument, create_lab, create_user

ICS = {"Content-Type": "text/calendar; charset=utf-8"}


def stamp(moment: datetime) -> str:
    """An iCalendar UTC time."""
    from datetime import UTC

    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def local(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def calendar(*events: str, extra: str = "") -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Lab//Old booking sheet//EN", extra]
    for event in events:
        lines += ["BEGIN:VEVENT", "DTSTAMP:20260101T000000Z", *event.strip().splitlines(),
                  "END:VEVENT"]  # fmt: skip
    lines.append("END:VCALENDAR")
    return ("\r\n".join(line for line in lines if line) + "\r\n").encode()


def lab_calendar() -> bytes:
    """Single, weekly with EXDATE and a moved instance, RDATE, free, cancelled, all-day and
    floating events, all within the next few weeks."""
    zone = get_settings().timezone
    return calendar(
        f"UID:single\nDTSTART:{stamp(at(2, 9))}\nDTEND:{stamp(at(2, 11))}\nSUMMARY:Dr Wang run",
        f"UID:weekly\nDTSTART;TZID={zone}:{local(at(3, 14))}\nDTEND;TZID={zone}:{local(at(3, 15))}\n"
        f"RRULE:FREQ=WEEKLY;COUNT=4\nEXDATE;TZID={zone}:{local(at(10, 14))}\n"
        f"RDATE;TZID={zone}:{local(at(5, 14))}",
        f"UID:weekly\nRECURRENCE-ID;TZID={zone}:{local(at(17, 14))}\n"
        f"DTSTART;TZID={zone}:{local(at(17, 16))}\nDTEND;TZID={zone}:{local(at(17, 17))}",
        f"UID:free\nDTSTART:{stamp(at(4, 9))}\nDTEND:{stamp(at(4, 10))}\nTRANSP:TRANSPARENT",
        f"UID:called-off\nDTSTART:{stamp(at(4, 11))}\nDTEND:{stamp(at(4, 12))}\nSTATUS:CANCELLED",
        f"UID:holiday\nDTSTART;VALUE=DATE:{day(6):%Y%m%d}\nDTEND;VALUE=DATE:{day(7):%Y%m%d}",
        f"UID:floating\nDTSTART:{local(at(8, 13))}\nDURATION:PT90M",
        # Our own feed, subscribed in the lab's calendar and exported back: not busy time.
        f"UID:booking-77@labshare\nDTSTART:{stamp(at(9, 9))}\nDTEND:{stamp(at(9, 10))}",
    )


EXPECTED = {
    ("single", at(2, 9), at(2, 11)),
    ("weekly", at(3, 14), at(3, 15)),
    ("weekly", at(5, 14), at(5, 15)),  # RDATE
    ("weekly", at(17, 16), at(17, 17)),  # moved instance; day 10 is excluded
    ("weekly", at(24, 14), at(24, 15)),
    ("holiday", at(6, 0), at(7, 0)),
    ("floating", at(8, 13), at(8, 14, 30)),
}


def _busy(session: Session, instrument_id: int) -> dict[tuple[str, datetime, datetime], int]:
    session.rollback()  # a fresh snapshot, and nothing stale in the identity map
    session.expire_all()
    rows = session.exec(
        select(Blackout).where(
            Blackout.instrument_id == instrument_id, Blackout.kind == BlackoutKind.imported
        )
    ).all()
    return {(b.source_uid or "", b.start_at, b.end_at): b.id or 0 for b in rows}


def _manager(session: Session):
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    return instrument, create_user(session, role=Role.lab_manager, lab=lab)


def test_import_expands_recurrences_and_blocks_booking(client: TestClient, session: Session):
    instrument, manager = _manager(session)
    response = client.post(
        f"/api/v1/instruments/{instrument.id}/calendars",
        content=lab_calendar(),
        headers={**auth(manager), **ICS},
    )
    assert response.status_code == 201, response.text
    source = response.json()
    assert source["kind"] == "upload" and source["events_imported"] == len(EXPECTED)
    assert source["added"] == len(EXPECTED) and source["removed"] == 0
    assert source["last_fetched_at"].endswith("Z") and source["last_error"] is None
    assert set(_busy(session, instrument.id)) == EXPECTED

    researcher = create_user(session)
    refused = client.post(
        "/api/v1/bookings",
        json=body(instrument.id, at(2, 10), at(2, 12)),
        headers=auth(researcher),
    )
    assert refused.status_code == 409
    assert {c["kind"] for c in refused.json()["conflicts"]} == {"blackout"}
    free = client.post(
        "/api/v1/bookings", json=body(instrument.id, at(4, 9), at(4, 10)), headers=auth(researcher)
    )
    assert free.status_code == 201, free.text  # the transparent event blocks nothing

    feed = icalendar.Calendar.from_ical(
        client.get(f"/ical/instruments/{instrument.id}.ics").content
    )
    busy = [e for e in feed.walk("VEVENT") if str(e["UID"]).startswith("imported-")]
    assert len(busy) == len(EXPECTED)
    assert {str(e["SUMMARY"]) for e in busy} == {"Busy"}
    assert b"Dr Wang" not in client.get(f"/ical/instruments/{instrument.id}.ics").content


def test_reimport_is_idempotent_and_replaces_by_difference(client: TestClient, session: Session):
    instrument, manager = _manager(session)
    url = f"/api/v1/instruments/{instrument.id}/calendars"
    created = client.post(url, content=lab_calendar(), headers={**auth(manager), **ICS}).json()
    before = _busy(session, instrument.id)
    feed_before = client.get(f"/ical/instruments/{instrument.id}.ics")

    again = client.put(
        f"{url}/{created['id']}", content=lab_calendar(), headers={**auth(manager), **ICS}
    )
    assert again.status_code == 200, again.text
    assert (again.json()["added"], again.json()["removed"], again.json()["kept"]) == (0, 0, 7)
    assert _busy(session, instrument.id) == before  # same rows, same ids
    feed_after = client.get(f"/ical/instruments/{instrument.id}.ics")
    assert feed_after.headers["ETag"] == feed_before.headers["ETag"]

    smaller = calendar(
        f"UID:single\nDTSTART:{stamp(at(2, 9))}\nDTEND:{stamp(at(2, 10))}",  # shortened
        f"UID:new\nDTSTART:{stamp(at(9, 9))}\nDTEND:{stamp(at(9, 10))}",
    )
    changed = client.put(
        f"{url}/{created['id']}", content=smaller, headers={**auth(manager), **ICS}
    )
    assert (changed.json()["added"], changed.json()["removed"]) == (2, 7)
    assert set(_busy(session, instrument.id)) == {
        ("single", at(2, 9), at(2, 10)),
        ("new", at(9, 9), at(9, 10)),
    }
    listed = client.get(url, headers=auth(manager)).json()
    assert [(s["id"], s["events_imported"]) for s in listed] == [(created["id"], 2)]


def test_refusals_write_nothing(client: TestClient, session: Session):
    instrument, manager = _manager(session)
    url = f"/api/v1/instruments/{instrument.id}/calendars"
    headers = {**auth(manager), **ICS}
    hourly = calendar(
        *[
            f"UID:h{i}\nDTSTART:{stamp(at(2, i))}\nDURATION:PT10M\nRRULE:FREQ=HOURLY"
            for i in range(3)
        ]
    )
    cases = [
        (b"hello, not a calendar", 422, "not an iCalendar file"),
        (b"", 422, "empty"),
        (b"BEGIN:VEVENT\r\nUID:x\r\nDTSTART:20270101T000000Z\r\nEND:VEVENT\r\n", 422, "VCALENDAR"),
        (b"\xff\xfe\x00garbage" * 10, 422, "not an iCalendar file"),
        (b"X" * (2 * 1024 * 1024 + 1), 413, "bytes"),
        (calendar(*[f"UID:{i}\nDTSTART:{stamp(at(2, 9))}" for i in range(5001)]), 413, "5,000"),
        (calendar(f"UID:m\nDTSTART:{stamp(at(2, 9))}\nRRULE:FREQ=MINUTELY"), 422, "MINUTELY"),
        (hourly, 413, "5,000"),
        # Dense since 1630: BYMONTH x BYMONTHDAY x BYHOUR once took 4.6 s, holding the lock.
        (
            calendar(
                "UID:dense\nDTSTART:16300101T000000Z\nDURATION:PT1M\n"
                "RRULE:FREQ=YEARLY;BYMONTH="
                + ",".join(map(str, range(1, 13)))
                + ";BYMONTHDAY="
                + ",".join(map(str, range(1, 32)))
                + ";BYHOUR="
                + ",".join(map(str, range(24)))
            ),
            413,
            "too dense",
        ),
        (
            calendar(f"UID:bad\nDTSTART:{stamp(at(2, 9))}\nRRULE:FREQ=DAILY;INTERVAL=x"),
            422,
            "RRULE",
        ),
        (calendar(f"UID:bad\nDTSTART:{stamp(at(2, 9))}\nRRULE:FREQ=WEEKLY;BYDAY=XX"), 422, "RRULE"),
        (calendar(f"UID:bad\nDTSTART:{stamp(at(2, 9))}\nRRULE:FREQ=DAILY;COUNT=abc"), 422, "RRULE"),
    ]
    for data, status, reason in cases:
        response = client.post(url, content=data, headers=headers)
        assert response.status_code == status, (data[:60], response.text)
        assert reason in response.json()["detail"], response.json()
    wrong_type = client.post(
        url, content=b"x", headers={**auth(manager), "Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    bad_url = client.post(url, json={"url": "ftp://example.org/cal.ics"}, headers=auth(manager))
    assert bad_url.status_code == 422 and "http" in bad_url.json()["detail"]
    extra = client.post(
        url, json={"url": "https://x.example/a.ics", "color": 1}, headers=auth(manager)
    )
    assert extra.status_code == 422
    session.rollback()  # a fresh snapshot, and nothing stale in the identity map
    session.expire_all()
    assert session.exec(select(CalendarSource)).all() == []
    assert _busy(session, instrument.id) == {}


def test_only_the_instruments_lab_managers(client: TestClient, session: Session):
    instrument, manager = _manager(session)
    other_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    researcher = create_user(session)
    url = f"/api/v1/instruments/{instrument.id}/calendars"
    for user in (other_manager, researcher):
        assert (
            client.post(url, content=lab_calendar(), headers={**auth(user), **ICS}).status_code
            == 403
        )
        assert client.get(url, headers=auth(user)).status_code == 403
    assert client.post(url, content=lab_calendar(), headers=ICS).status_code == 401
    assert client.post("/api/v1/instruments/999999/calendars", content=lab_calendar(),
                       headers={**auth(manager), **ICS}).status_code == 404  # fmt: skip


def test_import_displaces_overlapping_bookings_and_delete_frees_time(
    client: TestClient, session: Session
):
    instrument, manager = _manager(session)
    owner = create_user(session)
    booked = client.post(
        "/api/v1/bookings", json=body(instrument.id, at(2, 10), at(2, 11)), headers=auth(owner)
    ).json()
    url = f"/api/v1/instruments/{instrument.id}/calendars"
    imported = client.post(url, content=lab_calendar(), headers={**auth(manager), **ICS}).json()
    assert imported["displaced"] == 1
    session.rollback()  # a fresh snapshot, and nothing stale in the identity map
    session.expire_all()
    booking = session.get(Booking, booked["id"])
    assert booking is not None and booking.status == BookingStatus.displaced
    note = session.exec(select(Notification).where(Notification.user_id == owner.id)).one()
    assert note.kind == "booking_displaced" and note.booking_id == booked["id"]

    assert client.delete(f"{url}/{imported['id']}", headers=auth(manager)).status_code == 204
    assert client.delete(f"{url}/{imported['id']}", headers=auth(manager)).status_code == 404
    assert _busy(session, instrument.id) == {}
    rebook = client.post(
        "/api/v1/bookings", json=body(instrument.id, at(2, 9), at(2, 11)), headers=auth(owner)
    )
    assert rebook.status_code == 201, rebook.text


def test_imported_uids_survive_source_recreation(client: TestClient, session: Session):
    """An imported event's feed UID comes from its source, UID and start, not its row."""
    instrument, manager = _manager(session)
    url = f"/api/v1/instruments/{instrument.id}/calendars"
    data = calendar(f"UID:a\nDTSTART:{stamp(at(2, 9))}\nDTEND:{stamp(at(2, 10))}")
    source = client.post(url, content=data, headers={**auth(manager), **ICS}).json()
    feed = client.get(f"/ical/instruments/{instrument.id}.ics").content
    (uid,) = [str(e["UID"]) for e in icalendar.Calendar.from_ical(feed).walk("VEVENT")]
    assert uid.startswith(f"imported-{source['id']}-")
    # Rows replaced by hand (a re-import from scratch): same event, same UID.
    for row in session.exec(select(Blackout).where(col(Blackout.source_id) == source["id"])).all():
        session.delete(row)
    session.commit()
    client.put(f"{url}/{source['id']}", content=data, headers={**auth(manager), **ICS})
    feed = client.get(f"/ical/instruments/{instrument.id}.ics").content
    assert [str(e["UID"]) for e in icalendar.Calendar.from_ical(feed).walk("VEVENT")] == [uid]


OUTLOOK = b"""BEGIN:VCALENDAR\r
PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r
VERSION:2.0\r
BEGIN:VTIMEZONE\r
TZID:W. Europe Standard Time\r
BEGIN:STANDARD\r
DTSTART:16011028T030000\r
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:16010325T020000\r
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:outlook-weekly\r
DTSTAMP:20261101T000000Z\r
DTSTART;TZID=W. Europe Standard Time:20270318T090000\r
DTEND;TZID=W. Europe Standard Time:20270318T110000\r
RRULE:FREQ=WEEKLY;COUNT=3\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:outlook-free\r
DTSTAMP:20261101T000000Z\r
DTSTART:20270320T090000Z\r
DTEND:20270320T100000Z\r
X-MICROSOFT-CDO-BUSYSTATUS:FREE\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_outlook_zones_across_daylight_saving_and_free_time():
    """Outlook names its own VTIMEZONE; occurrences either side of the change keep 09:00."""
    from datetime import UTC

    from booking.calendars.parse import busy_events, parse_calendar

    events = busy_events(
        parse_calendar(OUTLOOK),
        start=datetime(2027, 3, 1, tzinfo=UTC),
        end=datetime(2027, 5, 1, tzinfo=UTC),
    )
    assert [(e.uid, e.start.hour, e.end.hour) for e in events] == [
        ("outlook-weekly", 8, 10),  # 09:00 CET
        ("outlook-weekly", 8, 10),
        ("outlook-weekly", 7, 9),  # 09:00 CEST, after 28 March
    ]


def test_busy_time_already_past_displaces_nothing(client: TestClient, session: Session):
    from datetime import UTC, timedelta

    instrument, manager = _manager(session)
    owner = create_user(session)
    now = datetime.now(UTC).replace(microsecond=0)
    past = Booking(
        instrument_id=instrument.id, user_id=owner.id, start_at=now - timedelta(hours=5),
        end_at=now - timedelta(hours=3), status=BookingStatus.confirmed,
    )  # fmt: skip
    session.add(past)
    session.commit()
    data = calendar(
        f"UID:yesterday\nDTSTART:{stamp(now - timedelta(hours=6))}\n"
        f"DTEND:{stamp(now - timedelta(hours=2))}"
    )
    response = client.post(
        f"/api/v1/instruments/{instrument.id}/calendars",
        content=data,
        headers={**auth(manager), **ICS},
    )
    assert response.status_code == 201 and response.json()["displaced"] == 0
    assert response.json()["events_imported"] == 1
    session.rollback()
    session.expire_all()
    assert session.get(Booking, past.id).status == BookingStatus.confirmed  # type: ignore[union-attr]
