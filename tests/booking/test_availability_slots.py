"""Availability and free-slot search, including a daylight-saving zone."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from core.settings import get_settings
from instruments.models import Blackout, BlackoutKind, InstrumentStatus, OpeningHours
from tests.booking.helpers import at, body, z
from tests.factories import (
    auth,
    create_institution,
    create_instrument,
    create_lab,
    create_user,
    get_or_create_category,
)


def _hours(session: Session, instrument_id: int, opens: time, closes: time) -> None:
    session.add_all(
        OpeningHours(instrument_id=instrument_id, weekday=d, opens=opens, closes=closes)
        for d in range(7)
    )
    session.commit()


def test_availability_merges_hours_blackouts_and_bookings(client, session: Session):
    inst = create_instrument(session, open_all_week=False)
    _hours(session, inst.id, time(9), time(17))
    session.add(
        Blackout(
            instrument_id=inst.id, start_at=at(2, 12), end_at=at(2, 13), kind=BlackoutKind.imported
        )
    )
    session.commit()
    client.post(
        "/api/v1/bookings",
        json=body(inst.id, at(2, 10), at(2, 11)),
        headers=auth(create_user(session)),
    )
    r = client.get(
        f"/api/v1/instruments/{inst.id}/availability",
        params={"start": at(2, 0).isoformat(), "end": at(3, 0).isoformat()},
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["free"] == [
        {"start": z(at(2, 9)), "end": z(at(2, 10))},
        {"start": z(at(2, 11)), "end": z(at(2, 12))},
        {"start": z(at(2, 13)), "end": z(at(2, 17))},
    ]
    assert [(b["start"], b["kind"]) for b in data["busy"]] == [
        (z(at(2, 0)), "closed"),
        (z(at(2, 10)), "booking"),
        (z(at(2, 12)), "blackout"),
        (z(at(2, 17)), "closed"),
    ]
    assert "user" not in r.text
    bad = [
        {"start": at(2, 0).isoformat(), "end": at(100, 0).isoformat()},
        {"start": at(3, 0).isoformat(), "end": at(2, 0).isoformat()},
        {"start": "2030-01-01T00:00:00", "end": "2030-01-02T00:00:00"},
        {"start": at(2, 0).isoformat()},
        {"start": at(2, 0).isoformat(), "end": at(3, 0).isoformat(), "extra": "1"},
    ]
    for params in bad:
        r = client.get(f"/api/v1/instruments/{inst.id}/availability", params=params)
        assert r.status_code == 422, (params, r.text)
    r = client.get(
        "/api/v1/instruments/99999/availability",
        params={"start": at(2, 0).isoformat(), "end": at(3, 0).isoformat()},
    )
    assert r.status_code == 404


@pytest.fixture
def berlin(engine, monkeypatch: pytest.MonkeyPatch) -> ZoneInfo:
    monkeypatch.setenv("LABSHARE_TIMEZONE", "Europe/Berlin")
    get_settings.cache_clear()
    return ZoneInfo("Europe/Berlin")


def test_daylight_saving_zone_keeps_local_hours(client, session: Session, berlin: ZoneInfo):
    inst = create_instrument(session, open_all_week=False, horizon_days=400)
    _hours(session, inst.id, time(9), time(17))
    # Berlin springs forward on Sunday 2027-03-28: 09:00 local is 08:00Z before, 07:00Z after.
    r = client.get(
        f"/api/v1/instruments/{inst.id}/availability",
        params={"start": "2027-03-27T00:00:00+01:00", "end": "2027-03-30T00:00:00+02:00"},
    )
    assert [f["start"] for f in r.json()["free"]] == [
        "2027-03-27T08:00:00Z",
        "2027-03-28T07:00:00Z",
        "2027-03-29T07:00:00Z",
    ]
    assert [f["end"] for f in r.json()["free"]] == [
        "2027-03-27T16:00:00Z",
        "2027-03-28T15:00:00Z",
        "2027-03-29T15:00:00Z",
    ]
    start = datetime(2027, 3, 22, 9, tzinfo=berlin)
    r = client.post(
        "/api/v1/bookings",
        json=body(inst.id, start, start.replace(hour=10), recurrence="FREQ=WEEKLY;COUNT=2"),
        headers=auth(create_user(session)),
    )
    assert r.status_code == 201, r.text
    assert [b["start"] for b in r.json()["bookings"]] == [
        "2027-03-22T08:00:00Z",
        "2027-03-29T07:00:00Z",
    ]
    # The slot grid counts from local midnight on both sides of the change.
    r = client.post(
        "/api/v1/bookings",
        json=body(
            inst.id,
            datetime(2027, 3, 29, 11, 30, tzinfo=berlin),
            datetime(2027, 3, 29, 12, 30, tzinfo=berlin),
        ),
        headers=auth(create_user(session)),
    )
    assert r.status_code == 201, r.text


def test_slots_across_a_category(client, session: Session):
    get_or_create_category(session, "ms-lc", group="ms")
    gc = get_or_create_category(session, "ms-gc", group="ms")
    other_cat = get_or_create_category(session, "xrd", group="xray")
    east, west = create_institution(session, code="EAST"), create_institution(session, code="WEST")
    early = create_instrument(
        session, lab=create_lab(session, institution=east), open_all_week=False
    )
    _hours(session, early.id, time(8), time(18))
    late = create_instrument(
        session, lab=create_lab(session, institution=west), category=gc, open_all_week=False
    )
    _hours(session, late.id, time(10), time(18))
    coarse = create_instrument(
        session, category=gc, slot_step_minutes=120, min_minutes=120, max_minutes=480
    )
    retired = create_instrument(session, status=InstrumentStatus.retired)
    elsewhere = create_instrument(session, category=other_cat)
    client.post(
        "/api/v1/bookings",
        json=body(early.id, at(2, 8), at(2, 9)),
        headers=auth(create_user(session)),
    )
    params = {
        "category": "ms",
        "start": at(2, 8).isoformat(),
        "end": at(2, 12).isoformat(),
        "duration_minutes": 60,
    }
    r = client.get("/api/v1/slots", params=params)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    ids = {i["instrument_id"] for i in items}
    assert retired.id not in ids and elsewhere.id not in ids and coarse.id not in ids
    assert [(i["instrument_id"], i["start"]) for i in items[:3]] == [
        (early.id, z(at(2, 9))),
        (early.id, z(at(2, 10))),
        (late.id, z(at(2, 10))),
    ]
    assert items == sorted(items, key=lambda i: i["start"])
    assert all(i["end"] <= z(at(2, 12)) for i in items)
    r = client.get("/api/v1/slots", params={**params, "institution": "WEST", "limit": 1})
    assert [i["instrument_id"] for i in r.json()["items"]] == [late.id]
    r = client.get("/api/v1/slots", params={**params, "duration_minutes": 120, "category": "ms-gc"})
    assert {i["instrument_id"] for i in r.json()["items"]} == {late.id, coarse.id}
    for bad in (
        {"category": "nope"},
        {"end": at(100, 0).isoformat()},
        {"duration_minutes": 0},
        {"start": "2030-01-01T00:00"},
        {"limit": 1000},
        {"institution": "NOPE"},
    ):
        assert client.get("/api/v1/slots", params={**params, **bad}).status_code == 422, bad


def test_slots_come_from_later_chunks_when_the_first_instruments_are_booked(
    client, session: Session, monkeypatch
):
    """Slot search reads busy time a chunk of instruments at a time, in the order of their
    earliest possible slot; what it answers is still the earliest slots over all of them."""
    from booking import availability

    monkeypatch.setattr(availability, "SLOT_CHUNK", 2)
    category = get_or_create_category(session, "nmr-600", group="nmr")
    instruments = [
        create_instrument(session, category=category, open_all_week=False) for _ in range(7)
    ]
    for instrument in instruments:
        _hours(session, instrument.id, time(8), time(18))
    booker = auth(create_user(session))
    for instrument in instruments[:4]:
        r = client.post(
            "/api/v1/bookings", json=body(instrument.id, at(2, 8), at(2, 9)), headers=booker
        )
        assert r.status_code == 201, r.text
    params = {
        "category": "nmr",
        "start": at(2, 8).isoformat(),
        "end": at(2, 12).isoformat(),
        "duration_minutes": 60,
        "limit": 5,
    }
    r = client.get("/api/v1/slots", params=params)
    assert r.status_code == 200, r.text
    ids = [i.id for i in instruments]
    assert [(i["instrument_id"], i["start"]) for i in r.json()["items"]] == [
        (ids[4], z(at(2, 8))),
        (ids[5], z(at(2, 8))),
        (ids[6], z(at(2, 8))),
        (ids[0], z(at(2, 9))),
        (ids[1], z(at(2, 9))),
    ]


def test_opening_hours_read_at_start_and_again_once_changed(
    client, session: Session, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reads every instrument's hours as it starts (LABSHARE_HOURS_WARM), so a
    booking reads none; hours a manager publishes afterwards are what the next answer uses."""
    from sqlalchemy import event

    from booking import timeline
    from labshare.app import create_app

    lab = create_lab(session)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    instruments = [create_instrument(session, lab=lab, open_all_week=False) for _ in range(3)]
    for n, instrument in enumerate(instruments):
        _hours(session, instrument.id, time(8 + n), time(16))
    timeline._HOURS_CACHE.clear()
    monkeypatch.setenv("LABSHARE_HOURS_WARM", "true")
    get_settings.cache_clear()
    with TestClient(create_app()):
        warming = [t for t in threading.enumerate() if t.name == "labshare-hours-warm"]
        for thread in warming:
            thread.join(10)
    get_settings.cache_clear()
    statements: list[str] = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        session.expire_all()
        for instrument in instruments:
            session.refresh(instrument)
        statements.clear()
        hours = timeline.hours_by_instrument(session, instruments)
        assert statements == []  # all three from what the start read
        assert [hours[i.id][0] for i in instruments] == [
            [(time(8), time(16))],
            [(time(9), time(16))],
            [(time(10), time(16))],
        ]
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    changed = client.put(
        f"/api/v1/instruments/{instruments[0].id}/opening-hours",
        headers=auth(manager),
        json={"intervals": [{"weekday": 0, "opens": "12:00", "closes": "13:00"}]},
    )
    assert changed.status_code == 200, changed.text
    session.rollback()  # a new transaction, which sees the manager's change
    session.refresh(instruments[0])
    assert timeline.hours_by_instrument(session, [instruments[0]])[instruments[0].id] == {
        0: [(time(12), time(13))]
    }


def test_a_refusal_on_the_night_clocks_go_back(client, session: Session, berlin: ZoneInfo):
    """Berlin's clocks go back on 2027-10-31 (03:00 CEST is 02:00 CET again). The slot grid
    stepped from the repeated hour's second occurrence back into its first
    (booking.intervals.align_up): this refusal offered the very hour that was taken, and
    walking a gap across that night never ended."""
    inst = create_instrument(session, horizon_days=400)
    start = datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # the first 02:30 of the night
    wanted = body(inst.id, start, start + timedelta(hours=1))
    first = client.post("/api/v1/bookings", json=wanted, headers=auth(create_user(session)))
    assert first.status_code == 201, first.text
    refused = client.post("/api/v1/bookings", json=wanted, headers=auth(create_user(session)))
    assert refused.status_code == 409, refused.text
    same = [a for a in refused.json()["alternatives"] if a["instrument_id"] == inst.id]
    assert "2027-10-30T23:30:00Z" in [a["start"] for a in same]  # the hour before
    assert "2027-10-31T01:30:00Z" in [a["start"] for a in same]  # the hour after
    assert "2027-10-31T00:30:00Z" not in [a["start"] for a in same]  # not the taken one


def test_the_first_bookable_slot_skips_the_lead_time_closed_days_and_busy_time(
    client, session: Session
):
    """Where an instrument's page opens its calendar: on a Friday before dawn, with a day's
    lead time and the weekend closed, not Friday nor the weekend but Monday morning, and
    Tuesday when Monday is blocked."""
    from booking.availability import first_bookable

    zone = get_settings().zone
    inst = create_instrument(
        session, open_all_week=False, lead_minutes=24 * 60, min_minutes=60, slot_step_minutes=60
    )
    session.add_all(
        OpeningHours(instrument_id=inst.id, weekday=d, opens=time(8), closes=time(18))
        for d in range(5)
    )
    session.commit()
    today = datetime.now(zone).date()
    friday = today + timedelta(days=(4 - today.weekday()) % 7 + 7)
    now = datetime.combine(friday, time(5), zone)
    monday = datetime.combine(friday + timedelta(days=3), time(8), zone)
    assert first_bookable(session, inst, now=now) == monday
    session.add(
        Blackout(instrument_id=inst.id, start_at=monday, end_at=monday + timedelta(hours=10),
                 kind=BlackoutKind.maintenance)
    )  # fmt: skip
    session.commit()
    assert first_bookable(session, inst, now=now) == monday + timedelta(days=1)


def test_the_instrument_page_opens_its_calendar_on_the_first_bookable_day(client, session: Session):
    zone = get_settings().zone
    inst = create_instrument(session, lead_minutes=10 * 24 * 60)
    ahead = datetime.now(zone) + timedelta(days=10)
    answer = client.get(f"/instruments/{inst.id}")
    assert answer.status_code == 200, (
        answer.status_code,
        answer.text[answer.text.find("<main") :][:600],
    )
    page = answer.text
    assert any(
        f'data-initial="{d.date().isoformat()}"' in page
        for d in (ahead, ahead + timedelta(hours=1))
    ), re.findall(r"data-initial=\"[^\"]*\"", page)
    # A day asked for in the address wins.
    chosen = (ahead + timedelta(days=3)).date().isoformat()
    assert f'data-initial="{chosen}"' in client.get(f"/instruments/{inst.id}?at={chosen}").text
