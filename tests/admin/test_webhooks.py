"""Outgoing webhooks end to end, on both databases: a lab registers an endpoint, a booking's
events reach a small local receiver that checks the signature as a receiver would, a 500
is retried after its backoff, the tries are recorded and a delivery can be replayed; a
private address is refused; two `labshare webhooks send` processes at once post each delivery once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from admin.models import DeliveryStatus, WebhookDelivery
from admin.webhooks import SIGNATURE_HEADER, verify, webhooks_prune, webhooks_send_due
from core.db import session_scope
from core.models import Role
from core.settings import get_settings
from tests.factories import auth, create_instrument, create_lab, create_user

LABSHARE = Path(sys.executable).with_name("labshare")
NEXT_MONDAY = (datetime.now(UTC) + timedelta(days=7 - datetime.now(UTC).weekday() + 7)).replace(
    hour=2, minute=0, second=0, microsecond=0
)


class Receiver:
    """An endpoint outside labshare: answers 500 to the first `fail_first` posts, checks
    every signature with the endpoint's secret, and keeps what it was sent."""

    def __init__(self, fail_first: int = 0) -> None:
        self.secret = ""
        self.fail_first = fail_first
        self.received: list[dict] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not verify(receiver.secret, body, self.headers.get(SIGNATURE_HEADER, "")):
                    receiver.bad_signatures += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"try again later")
                    return
                receiver.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSHARE_WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()


def test_private_addresses_and_unknown_events_are_refused(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    url = "/api/v1/webhooks/endpoints"
    for private in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/x",
                    "http://0x7f.1/x", "ftp://example.org/x"):  # fmt: skip
        r = client.post(url, json={"url": private, "events": ["booking.*"]}, headers=manager)
        assert r.status_code == 422, (private, r.text)
    r = client.post(
        url, json={"url": "http://1.1.1.1/x", "events": ["booking.made"]}, headers=manager
    )
    assert r.status_code == 422 and "booking.made" in r.text
    researcher = auth(create_user(session))
    r = client.post(url, json={"url": "http://1.1.1.1/x", "events": ["*"]}, headers=researcher)
    assert r.status_code == 403


def test_delivery_signed_retried_recorded_and_replayed(
    client: TestClient, session: Session, engine: Engine, allow_private: None
) -> None:
    lab, other_lab = create_lab(session), create_lab(session)
    instrument = create_instrument(session, lab=lab)
    elsewhere = create_instrument(session, lab=other_lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    researcher = auth(create_user(session))
    receiver = Receiver(fail_first=1)
    try:
        r = client.post(
            "/api/v1/webhooks/endpoints",
            json={"url": receiver.url, "events": ["booking.created", "booking.cancelled"]},
            headers=manager,
        )
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        endpoint_id = r.json()["id"]
        start = NEXT_MONDAY
        booked = client.post(
            "/api/v1/bookings",
            json={"instrument_id": instrument.id, "start": start.isoformat(),
                  "end": (start + timedelta(hours=1)).isoformat()},
            headers=researcher,
        )  # fmt: skip
        assert booked.status_code == 201, booked.text
        # Another lab's booking is not this endpoint's business.
        assert client.post(
            "/api/v1/bookings",
            json={"instrument_id": elsewhere.id, "start": start.isoformat(),
                  "end": (start + timedelta(hours=1)).isoformat()},
            headers=researcher,
        ).status_code == 201  # fmt: skip

        now = datetime.now(UTC)
        first = webhooks_send_due(engine=engine, now=now)
        assert (first.dispatched, first.delivered, first.retrying) == (1, 0, 1)
        assert receiver.received == [] and receiver.bad_signatures == 0
        # Not due again before its backoff...
        assert webhooks_send_due(engine=engine, now=now + timedelta(seconds=30)).delivered == 0
        # ...and delivered after it.
        second = webhooks_send_due(engine=engine, now=now + timedelta(seconds=61))
        assert second.delivered == 1
        [event] = receiver.received
        assert event["type"] == "booking.created"
        assert event["data"]["booking_id"] == booked.json()["id"]
        assert event["lab_id"] == lab.id

        deliveries = client.get(
            f"/api/v1/webhooks/endpoints/{endpoint_id}/deliveries", headers=manager
        ).json()
        assert [d["status"] for d in deliveries] == ["delivered"]
        detail = client.get(f"/api/v1/webhooks/deliveries/{deliveries[0]['id']}", headers=manager)
        tries = detail.json()["attempts_made"]
        assert [t["status_code"] for t in tries] == [500, 200]
        assert tries[0]["response"] == "try again later"
        # Another lab's manager cannot see it.
        stranger = auth(create_user(session, role=Role.lab_manager, lab=other_lab))
        assert (
            client.get(
                f"/api/v1/webhooks/deliveries/{deliveries[0]['id']}", headers=stranger
            ).status_code
            == 404
        )

        replay = client.post(
            f"/api/v1/webhooks/deliveries/{deliveries[0]['id']}/replay", headers=manager
        )
        assert replay.status_code == 200 and replay.json()["status"] == "pending"
        assert webhooks_send_due(engine=engine).delivered == 1
        assert [e["id"] for e in receiver.received] == [event["id"], event["id"]]
        # A month on, the events and their finished deliveries are pruned.
        with session_scope() as s:
            assert webhooks_prune(s, now=now + timedelta(days=29)) == 0
        with session_scope() as s:
            assert webhooks_prune(s, now=now + timedelta(days=31)) == 2
        session.rollback()
        assert session.exec(select(WebhookDelivery)).all() == []
    finally:
        receiver.close()


def test_two_senders_post_each_delivery_once(
    client: TestClient, session: Session, engine: Engine, allow_private: None, tmp_path: Path
) -> None:
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    researcher = auth(create_user(session))
    receiver = Receiver()
    try:
        r = client.post(
            "/api/v1/webhooks/endpoints",
            json={"url": receiver.url, "events": ["*"]},
            headers=manager,
        )
        receiver.secret = r.json()["secret"]
        for day in range(12):
            start = NEXT_MONDAY + timedelta(days=day)
            assert client.post(
                "/api/v1/bookings",
                json={"instrument_id": instrument.id, "start": start.isoformat(),
                      "end": (start + timedelta(hours=1)).isoformat()},
                headers=researcher,
            ).status_code == 201  # fmt: skip
        # Two `labshare webhooks send` processes at once, three passes each.
        engine.pool.dispose()
        env = {**os.environ, "LABSHARE_WEBHOOK_ALLOW_PRIVATE_URLS": "true"}
        passes = " && ".join([f"{LABSHARE} webhooks send --limit 4"] * 3)
        senders = [
            subprocess.Popen(
                ["sh", "-c", passes], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0].decode() for p in senders]
        assert all(p.returncode == 0 for p in senders), outputs
        ids = [e["id"] for e in receiver.received]
        assert len(ids) == 12 and len(set(ids)) == 12, (ids, outputs)
        session.rollback()
        statuses = session.exec(select(WebhookDelivery.status)).all()
        assert statuses == [DeliveryStatus.delivered] * 12
    finally:
        receiver.close()
