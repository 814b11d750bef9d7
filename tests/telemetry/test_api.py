"""Usage, live status, gateways and /metrics over HTTP, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from booking.models import Booking
from core.models import Role
from core.settings import get_settings
from instruments.models import Lab
from telemetry.models import Gateway, Presence
from telemetry.protocol import encode, events_topic, presence_topic
from telemetry.store import Directory, Incoming, write_batch
from tests.factories import auth, create_lab, create_user
from tests.telemetry.conftest import Net

NOW = datetime.now(UTC).replace(microsecond=0)


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def store(engine: Engine, net: Net, code: str, *events: tuple[str, int, dict | None]) -> None:
    batch = [
        Incoming(0, 1, events_topic(net.gateway.uid, code),
                 encode(id=f"{code}-{i}", ts=NOW - timedelta(minutes=m), type=t, data=d))
        for i, (t, m, d) in enumerate(events)
    ]  # fmt: skip
    write_batch(engine, Directory(), batch)


def test_usage_with_its_booking(
    client: TestClient, engine: Engine, session: Session, net: Net
) -> None:
    lab = session.get(Lab, session.get(Gateway, net.gateway.id).lab_id)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    researcher = create_user(session)
    booking = Booking(
        instrument_id=net.instrument_ids[0], user_id=researcher.id,
        start_at=NOW - timedelta(minutes=60), end_at=NOW - timedelta(minutes=20),
    )  # fmt: skip
    session.add(booking)
    session.commit()
    store(engine, net, net.codes[0], ("session_start", 55, None), ("session_end", 10, None))
    store(engine, net, net.codes[1], ("session_start", 5, None))
    window = {"start": z(NOW - timedelta(hours=2)), "end": (NOW + timedelta(days=1)).isoformat()}
    r = client.get(
        f"/api/v1/instruments/{net.instrument_ids[0]}/usage", params=window, headers=auth(manager)
    )
    assert r.status_code == 200, r.text
    [usage] = r.json()
    assert usage["kind"] == "booked" and usage["booking"]["id"] == booking.id
    assert usage["overtime_minutes"] == 10 and usage["end"].endswith("Z")
    assert usage["booking"]["start"] == z(booking.start_at)
    r = client.get(f"/api/v1/labs/{net.lab_code}/usage", params=window, headers=auth(manager))
    assert [u["kind"] for u in r.json()] == ["booked", "walk_up"]
    assert r.json()[1]["end"] is None  # still open

    # Others may not see usage; bad windows are 422, not 500.
    url = f"/api/v1/instruments/{net.instrument_ids[0]}/usage"
    assert client.get(url, params=window, headers=auth(researcher)).status_code == 403
    other_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    assert client.get(url, params=window, headers=auth(other_manager)).status_code == 403
    assert client.get(url, params=window).status_code == 401
    admin = create_user(session, role=Role.network_admin)
    assert client.get(url, params=window, headers=auth(admin)).status_code == 200
    naive = {"start": "2026-11-25T08:00:00", "end": window["end"]}
    assert client.get(url, params=naive, headers=auth(admin)).status_code == 422
    backwards = {"start": window["end"], "end": window["start"]}
    assert client.get(url, params=backwards, headers=auth(admin)).status_code == 422
    assert client.get(url, params=window | {"x": 1}, headers=auth(admin)).status_code == 422
    assert (
        client.get(
            "/api/v1/instruments/999999/usage", params=window, headers=auth(admin)
        ).status_code
        == 404
    )


def test_status(client: TestClient, engine: Engine, session: Session, net: Net) -> None:
    first, second, third = net.instrument_ids
    # Nothing heard from the gateway yet: offline.
    assert client.get(f"/api/v1/instruments/{first}/status").json()["state"] == "offline"
    write_batch(engine, Directory(), [Incoming(0, 1, presence_topic(net.gateway.uid), b"online")])
    store(engine, net, net.codes[0], ("session_start", 2, None))
    store(engine, net, net.codes[1], ("status", 1, {"state": "fault"}))
    body = client.get(f"/api/v1/instruments/{first}/status").json()
    assert body["state"] == "in_use" and body["gateway_id"] == net.gateway.uid
    assert client.get(f"/api/v1/instruments/{second}/status").json()["state"] == "fault"
    assert client.get(f"/api/v1/instruments/{third}/status").json()["state"] == "idle"
    lab = client.get(f"/api/v1/labs/{net.lab_code}/status").json()
    assert [s["state"] for s in lab] == ["in_use", "fault", "idle"]
    # Its last will: everything it served is offline, and the open session is closed.
    write_batch(engine, Directory(), [Incoming(0, 1, presence_topic(net.gateway.uid), b"offline")])
    assert {s["state"] for s in client.get(f"/api/v1/labs/{net.lab_code}/status").json()} == {
        "offline"
    }
    assert client.get("/api/v1/instruments/999999/status").status_code == 404
    assert client.get("/api/v1/labs/NOPE/status").status_code == 404


def test_lab_gateways_and_metrics(
    client: TestClient, engine: Engine, session: Session, net: Net, monkeypatch
) -> None:
    write_batch(engine, Directory(), [
        Incoming(0, 1, presence_topic(net.gateway.uid), b"online"),
        Incoming(0, 1, events_topic(net.gateway.uid, net.codes[0]), b"junk"),
    ])  # fmt: skip
    admin = create_user(session, role=Role.network_admin)
    r = client.get(f"/api/v1/labs/{net.lab_code}/gateways", headers=auth(admin))
    assert r.status_code == 200
    [gw] = r.json()
    assert gw["gateway_id"] == net.gateway.uid and gw["presence"] == Presence.online
    assert "password" not in str(r.json())
    assert (
        client.get(
            f"/api/v1/labs/{net.lab_code}/gateways", headers=auth(create_user(session))
        ).status_code
        == 403
    )
    assert client.get("/metrics").status_code == 404  # off unless a token is set
    monkeypatch.setattr(get_settings(), "metrics_token", "scrape-me")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    text = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).text
    assert "labshare_db_pool_checked_out" in text and "labshare_request_gate_waiting" in text
    assert "labshare_telemetry_dead_letters 1" in text
    assert "labshare_telemetry_gateways_online 1" in text
