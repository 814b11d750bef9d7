"""iCalendar feeds through HTTP, read back with the icalendar library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from booking.models import Booking, BookingStatus
from core.settings import get_settings
from instruments.models import Blackout, BlackoutKind
from tests.booking.helpers import at, body
from tests.factories import auth, create_instrument, create_lab, create_user


def _feed(client: TestClient, path: str, **headers: str) -> icalendar.Calendar:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    return icalendar.Calendar.from_ical(response.content)


def _events(cal: icalendar.Calendar) -> dict[str, icalendar.Event]:
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert len(events) == len(cal.walk("VEVENT")), "UIDs must be unique in a feed"
    return events


def _book(client: TestClient, user, instrument_id: int, offset: int, hour: int, **extra) -> dict:
    response = client.post(
        "/api/v1/bookings",
        json=body(instrument_id, at(offset, hour), at(offset, hour + 1), **extra),
        headers=auth(user),
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_instrument_feed_is_valid_busy_time_without_personal_data(
    client: TestClient, session: Session
):
    instrument = create_instrument(session, name="Orbitrap Exploris", location="Room 101")
    alice = create_user(session, email="alice.secret@example.org")
    booked = _book(client, alice, instrument.id, 2, 10, purpose="Confidential peptide study")
    session.add(
        Blackout(
            instrument_id=instrument.id,
            start_at=at(3, 8),
            end_at=at(3, 12),
            kind=BlackoutKind.maintenance,
            reason="lamp swap",
        )
    )
    session.commit()

    response = client.get(f"/ical/instruments/{instrument.id}.ics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "\r\n" in text and text.startswith("BEGIN:VCALENDAR")
    for secret in ("alice", "secret", "Confidential", "peptide"):
        assert secret not in text

    cal = icalendar.Calendar.from_ical(response.content)
    assert str(cal["VERSION"]) == "2.0"
    assert "labshare" in str(cal["PRODID"])
    assert "Orbitrap Exploris" in str(cal["X-WR-CALNAME"])
    assert "X-PUBLISHED-TTL:PT15M\r\n" in text and "REFRESH-INTERVAL;VALUE=DURATION:PT15M" in text
    zones = cal.walk("VTIMEZONE")
    assert [str(z["TZID"]) for z in zones] == [get_settings().timezone]

    events = _events(cal)
    booking_event = events[f"booking-{booked['id']}@labshare"]
    assert str(booking_event["SUMMARY"]) == "Booked"
    assert str(booking_event["STATUS"]) == "CONFIRMED"
    assert booking_event["SEQUENCE"] == booked["version"]
    assert booking_event.decoded("DTSTART") == at(2, 10)
    assert booking_event.decoded("DTEND") == at(2, 11)
    assert str(booking_event["DTSTART"].params["TZID"]) == get_settings().timezone
    for name in ("DTSTAMP", "LAST-MODIFIED", "CREATED"):
        assert booking_event.decoded(name).utcoffset() == timedelta(0)
    (maintenance,) = [e for uid, e in events.items() if uid.startswith("blackout-")]
    assert str(maintenance["SUMMARY"]) == "Maintenance"
    assert maintenance.decoded("DTSTART") == at(3, 8)
    assert "lamp" not in text  # the lab's internal reason is not published either


def test_feed_etag_304_and_reschedule_bumps_sequence_with_a_stable_uid(
    client: TestClient, session: Session
):
    instrument = create_instrument(session)
    owner = create_user(session)
    booked = _book(client, owner, instrument.id, 2, 9)
    path = f"/ical/instruments/{instrument.id}.ics"
    uid = f"booking-{booked['id']}@labshare"

    first = client.get(path)
    etag = first.headers["ETag"]
    assert first.headers["Last-Modified"].endswith("GMT")
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(path, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    again = client.get(path)
    assert again.content == first.content and again.headers["ETag"] == etag  # refresh: stable

    got = client.get(f"/api/v1/bookings/{booked['id']}", headers=auth(owner))
    moved = client.patch(
        f"/api/v1/bookings/{booked['id']}",
        json={"start": at(2, 14).isoformat(), "end": at(2, 15).isoformat()},
        headers={**auth(owner), "If-Match": got.headers["ETag"]},
    )
    assert moved.status_code == 200, moved.text

    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    old = _events(icalendar.Calendar.from_ical(first.content))[uid]
    new = _events(icalendar.Calendar.from_ical(changed.content))[uid]
    assert new["SEQUENCE"] > old["SEQUENCE"]
    assert new.decoded("DTSTART") == at(2, 14)
    assert new.decoded("LAST-MODIFIED") >= old.decoded("LAST-MODIFIED")

    # Cancelled: gone from the instrument's busy time.
    assert client.post(f"/api/v1/bookings/{booked['id']}/cancel", headers=auth(owner)).is_success
    assert uid not in _events(_feed(client, path))


def test_user_feed_statuses_location_description_and_cancelled(
    client: TestClient, session: Session
):
    lab = create_lab(session, name="Proteomics Core")
    plain = create_instrument(session, lab=lab, name="Q Exactive", location="B2-105")
    gated = create_instrument(session, lab=lab, name="Krios", approval_required=True)
    me = create_user(session)
    other = create_user(session)
    confirmed = _book(client, me, plain.id, 2, 10, purpose="Phospho run 7")
    pending = _book(client, me, gated.id, 2, 12)
    cancelled = _book(client, me, plain.id, 3, 10)
    assert pending["status"] == "pending"
    assert client.post(f"/api/v1/bookings/{cancelled['id']}/cancel", headers=auth(me)).is_success
    _book(client, other, plain.id, 4, 10)  # someone else's: never in my feed

    links = client.get("/api/v1/me/calendar", headers=auth(me)).json()
    assert links["feed_url"].endswith(f"/ical/users/{me.feed_token}.ics")
    assert links["webcal_url"].startswith("webcal://")
    cal = _feed(client, "/ical/users/" + links["feed_url"].rsplit("/", 1)[1])
    events = _events(cal)
    assert set(events) == {f"booking-{b['id']}@labshare" for b in (confirmed, pending, cancelled)}

    first = events[f"booking-{confirmed['id']}@labshare"]
    assert str(first["STATUS"]) == "CONFIRMED" and str(first["TRANSP"]) == "OPAQUE"
    assert "Q Exactive" in str(first["SUMMARY"])
    assert str(first["LOCATION"]).startswith("B2-105, Proteomics Core")
    description = str(first["DESCRIPTION"])
    assert "Phospho run 7" in description
    assert f"/instruments/{plain.id}" in description and str(first["URL"]).startswith("http")
    assert str(events[f"booking-{pending['id']}@labshare"]["STATUS"]) == "TENTATIVE"
    gone = events[f"booking-{cancelled['id']}@labshare"]
    assert str(gone["STATUS"]) == "CANCELLED" and str(gone["TRANSP"]) == "TRANSPARENT"
    assert gone["SEQUENCE"] >= 1


def test_feed_tokens_unknown_404_and_rotation(client: TestClient, session: Session):
    me = create_user(session)
    assert client.get("/ical/users/not-a-token.ics").status_code == 404
    assert client.get("/ical/instruments/999999.ics").status_code == 404
    assert client.get("/ical/instruments/abc.ics").status_code == 422
    assert client.get("/api/v1/me/calendar").status_code == 401

    old = client.get("/api/v1/me/calendar", headers=auth(me)).json()["feed_url"]
    assert client.get(old).status_code == 200
    rotated = client.post("/api/v1/me/calendar/rotate", headers=auth(me))
    assert rotated.status_code == 200
    new = rotated.json()["feed_url"]
    assert new != old
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    assert client.head(new).status_code == 200


def test_old_cancelled_bookings_leave_the_personal_feed(client: TestClient, session: Session):
    instrument = create_instrument(session)
    me = create_user(session)
    now = datetime.now(UTC)
    for days_ago, status in ((40, BookingStatus.cancelled), (2, BookingStatus.cancelled)):
        session.add(
            Booking(
                instrument_id=instrument.id,
                user_id=me.id,
                start_at=now + timedelta(days=3),
                end_at=now + timedelta(days=3, hours=1),
                status=status,
                version=2,
                updated_at=now - timedelta(days=days_ago),
            )
        )
    session.commit()
    events = _events(_feed(client, f"/ical/users/{me.feed_token}.ics"))
    assert len(events) == 1  # the one cancelled 40 days ago is gone; 2 days ago still shown


@pytest.mark.parametrize("zone", ["Europe/Berlin"])
def test_daylight_saving_zone_gets_vtimezone_and_exact_instants(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch, zone: str
):
    monkeypatch.setenv("LABSHARE_TIMEZONE", zone)
    get_settings.cache_clear()
    instrument = create_instrument(session)
    # Either side of Berlin's next change of offset (late March or late October).
    year = datetime.now(UTC).year + 1
    instants = [
        datetime(year, 3, 28, 9, tzinfo=UTC),
        datetime(year, 4, 2, 9, tzinfo=UTC),
        datetime(year, 10, 20, 9, tzinfo=UTC),
        datetime(year, 11, 2, 9, tzinfo=UTC),
    ]
    for start in instants:
        session.add(
            Blackout(
                instrument_id=instrument.id,
                start_at=start,
                end_at=start + timedelta(hours=2),
                kind=BlackoutKind.internal,
            )
        )
    session.commit()
    cal = _feed(client, f"/ical/instruments/{instrument.id}.ics")
    (vtimezone,) = cal.walk("VTIMEZONE")
    assert str(vtimezone["TZID"]) == zone
    assert {c.name for c in vtimezone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    starts = sorted(e.decoded("DTSTART") for e in cal.walk("VEVENT"))
    assert starts == instants  # aware datetimes compare as instants
    offsets = {e["DTSTART"].dt.utcoffset() for e in cal.walk("VEVENT")}
    assert offsets == {timedelta(hours=1), timedelta(hours=2)}
    assert {str(e["SUMMARY"]) for e in cal.walk("VEVENT")} == {"Internal use"}


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/St_Johns", "UTC"])
def test_fast_vevent_writer_matches_the_icalendar_library_byte_for_byte(zone: str):
    """The feed writes VEVENTs from icalendar's escaping and folding; the component
    machinery must give the very same bytes."""
    from zoneinfo import ZoneInfo

    from booking.calendars.format import FeedEvent, _vevent, _vevent_bytes

    now = datetime(2027, 3, 28, 0, 30, 15, 123456, tzinfo=UTC)
    texts = ["Booked", "a; b, c\\d\nline two", "Ü" * 80, "x" * 74, "混合 text, 很长" * 12, ""]
    for i, text in enumerate(texts):
        event = FeedEvent(
            uid=f"booking-{i}@labshare",
            start=now + timedelta(hours=i * 5),
            end=now + timedelta(hours=i * 5 + 1, minutes=30),
            summary=text or "Busy",
            status=("CONFIRMED", "TENTATIVE", "CANCELLED")[i % 3],
            sequence=i,
            stamp=now - timedelta(days=i),
            created=now - timedelta(days=30),
            location=text,
            description=text + "\nhttps://labshare.example/instruments/1" if text else "",
            url="https://labshare.example/instruments/1" if i % 2 else "",
        )
        tz = UTC if zone == "UTC" else ZoneInfo(zone)
        assert _vevent_bytes(event, zone) == _vevent(event, tz).to_ical()
