"""Hostile input that used to be a 500 (a schema fuzzer's and hand-made finds) is a 4xx
with a reason, on both databases."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from instruments.models import Lab
from tests.factories import auth, create_instrument, create_user

EDGES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-12:00",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59+14:00",
]


@pytest.fixture
def actors(session: Session):
    instrument = create_instrument(session)
    lab = session.get(Lab, instrument.lab_id)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    admin = create_user(session, role=Role.network_admin)
    researcher = create_user(session)
    session.commit()
    return instrument, manager, admin, researcher


def _ok(response) -> None:
    assert response.status_code < 500, (response.request.url, response.text)


def test_non_utf8_calendar_bodies(client: TestClient, actors) -> None:
    instrument, manager, _admin, _r = actors
    h = {**auth(manager), "Content-Type": "text/calendar"}
    body = b"BEGIN:VCALENDAR\r\nSUMMARY:\xff\xfe\xc3\x28\r\nEND:VCALENDAR\r\n"
    answer = client.post(f"/api/v1/instruments/{instrument.id}/calendars", content=body, headers=h)
    _ok(answer)  # decoded leniently, or refused with a reason
    answer = client.put(f"/api/v1/instruments/{instrument.id}/calendars/1", content=body, headers=h)
    _ok(answer)


def test_nulls_where_values_are_required(client: TestClient, actors) -> None:
    instrument, manager, admin, researcher = actors
    for field in ("category", "rules", "status", "name"):
        _ok(
            client.patch(
                f"/api/v1/instruments/{instrument.id}", json={field: None}, headers=auth(manager)
            )
        )
    for field in ("is_active", "role"):
        _ok(
            client.patch(
                f"/api/v1/admin/users/{researcher.id}", json={field: None}, headers=auth(admin)
            )
        )
    answer = client.put(
        f"/api/v1/admin/institutions/{instrument.lab_id}/stripe-account",
        json={"stripe_account_id": "acct_0"},
        headers=auth(admin),
    )
    _ok(answer)


@pytest.mark.parametrize("edge", EDGES)
def test_times_at_the_ends_of_the_calendar(client: TestClient, actors, edge: str) -> None:
    instrument, manager, admin, researcher = actors
    i = instrument.id
    near = "2027-01-01T00:00:00+08:00"
    for start, end in ((edge, near), (near, edge), (edge, edge)):
        q = f"start={quote(start)}&end={quote(end)}"
        _ok(client.get(f"/api/v1/instruments/{i}/availability?{q}"))
        _ok(client.get(f"/api/v1/slots?category=ms-lc&duration_minutes=60&{q}"))
        _ok(client.get(f"/api/v1/instruments/{i}/usage?{q}", headers=auth(manager)))
        _ok(client.get(f"/api/v1/bookings?{q}", headers=auth(researcher)))
        _ok(client.get(f"/api/v1/admin/audit?{q}", headers=auth(admin)))
        body = {"instrument_id": i, "start": start, "end": end}
        _ok(client.post("/api/v1/bookings", json=body, headers=auth(researcher)))
        _ok(
            client.post(
                f"/api/v1/instruments/{i}/blackouts",
                json={"start": start, "end": end, "reason": "x"},
                headers=auth(manager),
            )
        )
        card = {
            "instrument_id": i,
            "payer_class": "academic",
            "unit": "hour",
            "amount": 100,
            "effective_from": start,
            "effective_to": end,
        }
        _ok(client.post("/api/v1/rate-cards", json=card, headers=auth(manager)))


def test_ids_past_64_bits(client: TestClient, actors) -> None:
    _i, _manager, admin, researcher = actors
    huge = 10**20
    for path in (
        f"/api/v1/invoices/{huge}.csv",
        f"/api/v1/invoices/{huge}",
        f"/api/v1/bookings/{huge}",
        f"/api/v1/instruments/{huge}",
        f"/api/v1/instruments/{huge}/availability?start=2027-01-01T00:00:00Z&end=2027-01-02T00:00:00Z",
        f"/api/v1/admin/settlements/{huge}",
    ):
        answer = client.get(path, headers=auth(admin))
        assert answer.status_code in (404, 422), (path, answer.text)
    answer = client.post(f"/api/v1/bookings/{huge}/cancel", headers=auth(researcher))
    assert answer.status_code in (404, 422)
    answer = client.post(
        "/api/v1/bookings",
        json={
            "instrument_id": huge,
            "start": "2027-01-01T09:00:00Z",
            "end": "2027-01-01T10:00:00Z",
        },
        headers=auth(researcher),
    )
    assert answer.status_code in (404, 422), answer.text


def test_numbers_past_what_json_holds(client: TestClient, actors) -> None:
    """1e400 reads as infinity and NaN as not-a-number: a 422 that names the field, where
    echoing the input back as JSON failed with a 500."""
    instrument, _manager, _admin, researcher = actors
    head = {**auth(researcher), "Content-Type": "application/json"}
    for raw in (
        b'{"instrument_id": 1e400}',
        b'{"instrument_id": NaN}',
        b'{"instrument_id": -1e999}',
    ):
        response = client.post("/api/v1/bookings", content=raw, headers=head)
        assert response.status_code == 422, response.text
        assert any(e["loc"] == ["body", "instrument_id"] for e in response.json()["detail"])
    response = client.patch(
        f"/api/v1/instruments/{instrument.id}", content=b'{"asset_value": 1e400}', headers=head
    )
    assert response.status_code in (403, 422), response.text


def test_nul_characters_refused_alike_on_both_databases(
    client: TestClient, session: Session, actors
) -> None:
    """PostgreSQL's text cannot hold NUL; SQLite stored it. Both now answer 422 with the
    reason and keep nothing, whichever field or query carries it."""
    instrument, manager, _admin, researcher = actors
    body = {
        "instrument_id": instrument.id,
        "start": "2027-03-01T09:00:00Z",
        "end": "2027-03-01T10:00:00Z",
        "purpose": "a\u0000b",
    }
    answer = client.post("/api/v1/bookings", json=body, headers=auth(researcher))
    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.text
    mine = client.get("/api/v1/bookings", headers=auth(researcher))
    assert mine.status_code == 200 and mine.json()["items"] == [], mine.text

    answer = client.patch(
        f"/api/v1/instruments/{instrument.id}", json={"name": "x\u0000"}, headers=auth(manager)
    )
    assert answer.status_code == 422, answer.text
    assert client.get(f"/api/v1/instruments/{instrument.id}").json()["name"] == instrument.name

    answer = client.get("/api/v1/instruments?q=a%00b")
    assert answer.status_code == 422, answer.text
