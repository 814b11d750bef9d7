"""Calendars subscribed by URL, fetched from a real HTTP server on this machine; the CLI."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from booking.calendars.cli import mount
from booking.calendars.fetch import calendar_sources_sync_due, due_source_ids
from booking.calendars.models import CalendarSource
from core.models import Role
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.models import Blackout
from tests.booking.helpers import at
from tests.booking.test_calendar_import import calendar, lab_calendar, stamp
from tests.factories import auth, create_instrument, create_lab, create_user

runner = CliRunner()


@pytest.fixture(autouse=True)
def _local_urls(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's calendar server is on loopback, which production refuses by default."""
    monkeypatch.setenv("LABSHARE_CALENDAR_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()


root = typer.Typer()
mount(root)


class CalendarServer:
    """A tiny HTTP server whose answers the test sets: path -> (status, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits = 0
        routes = self.routes
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # no Content-Length needed: the body ends at close

            def do_GET(self) -> None:
                server.hits += 1
                status, body = routes.get(self.path, (404, b"not here"))
                self.send_response(status)
                self.send_header("Content-Type", "text/calendar")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def calendar_server() -> Iterator[CalendarServer]:
    server = CalendarServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _subscribe(client: TestClient, session: Session, url: str, refresh: int = 30):
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    response = client.post(
        f"/api/v1/instruments/{instrument.id}/calendars",
        json={"url": url, "refresh_minutes": refresh},
        headers=auth(manager),
    )
    assert response.status_code == 201, response.text
    return instrument, manager, response.json()


def _source(session: Session, source_id: int) -> CalendarSource:
    session.rollback()  # a fresh snapshot, and nothing stale in the identity map
    session.expire_all()
    source = session.get(CalendarSource, source_id)
    assert source is not None
    return source


def test_url_source_is_fetched_on_schedule(
    client: TestClient, session: Session, engine: Engine, calendar_server: CalendarServer
):
    calendar_server.routes["/lab.ics"] = (200, lab_calendar())
    instrument, manager, created = _subscribe(client, session, calendar_server.url("/lab.ics"), 30)
    assert created["kind"] == "url" and created["last_fetched_at"] is None
    assert created["id"] in due_source_ids(engine=engine)

    (outcome,) = calendar_sources_sync_due(engine=engine)
    assert outcome.ok and outcome.events == 7 and outcome.added == 7, outcome
    listed = client.get(f"/api/v1/instruments/{instrument.id}/calendars", headers=auth(manager))
    (row,) = listed.json()
    assert row["events_imported"] == 7 and row["last_fetched_at"] and row["last_error"] is None
    assert row["refresh_minutes"] == 30

    # Not due again until refresh_minutes have passed.
    assert calendar_sources_sync_due(engine=engine) == []
    calendar_server.routes["/lab.ics"] = (
        200,
        calendar(f"UID:only\nDTSTART:{stamp(at(2, 9))}\nDTEND:{stamp(at(2, 10))}"),
    )
    later = utcnow() + timedelta(minutes=31)
    (outcome,) = calendar_sources_sync_due(engine=engine, now=later)
    assert (outcome.ok, outcome.added, outcome.removed) == (True, 1, 7)
    busy = session.exec(select(Blackout).where(Blackout.source_id == created["id"])).all()
    assert [(b.source_uid, b.start_at) for b in busy] == [("only", at(2, 9))]
    assert calendar_server.hits == 2


def test_fetch_errors_are_recorded_and_keep_the_last_busy_time(
    client: TestClient, session: Session, engine: Engine, calendar_server: CalendarServer
):
    calendar_server.routes["/lab.ics"] = (200, lab_calendar())
    _instrument, _manager, created = _subscribe(client, session, calendar_server.url("/lab.ics"))
    assert calendar_sources_sync_due(engine=engine)[0].ok
    source_id = created["id"]

    failures = [
        ((500, b"oops"), "HTTP 500"),
        ((200, b"<html>login page</html>"), "not an iCalendar file"),
        ((200, b"BEGIN:VCALENDAR\r\n" + b"X" * (2 * 1024 * 1024)), "larger than"),
    ]
    for answer, reason in failures:
        calendar_server.routes["/lab.ics"] = answer
        (outcome,) = calendar_sources_sync_due(engine=engine, force=True)
        assert not outcome.ok and reason in (outcome.error or ""), outcome
        source = _source(session, source_id)
        assert reason in (source.last_error or "")
        assert source.events_imported == 7
        assert len(session.exec(select(Blackout).where(Blackout.source_id == source_id)).all()) == 7

    # An address where nothing listens: recorded, not raised.
    _source(session, source_id).url = f"http://127.0.0.1:{_closed_port()}/x.ics"
    session.commit()
    (outcome,) = calendar_sources_sync_due(engine=engine, force=True)
    assert not outcome.ok and "ConnectError" in (outcome.error or "")

    _source(session, source_id).url = calendar_server.url("/lab.ics")
    session.commit()
    calendar_server.routes["/lab.ics"] = (200, lab_calendar())
    (outcome,) = calendar_sources_sync_due(engine=engine, force=True)
    assert outcome.ok and (outcome.added, outcome.removed) == (0, 0)
    assert _source(session, source_id).last_error is None


def test_cli_sync_import_list_and_feed(
    session: Session, engine: Engine, calendar_server: CalendarServer, tmp_path: Path
):
    lab = create_lab(session)
    create_instrument(session, lab=lab, code="NMR-600")
    calendar_server.routes["/lab.ics"] = (200, lab_calendar())

    added = runner.invoke(
        root, ["calendars", "add-url", "--instrument", "NMR-600", calendar_server.url("/lab.ics")]
    )
    assert added.exit_code == 0, added.output
    synced = runner.invoke(root, ["calendars", "sync"])
    assert synced.exit_code == 0, synced.output
    assert "7 busy event(s)" in synced.output and "synced 1 of 1" in synced.output

    ics = tmp_path / "extra.ics"
    ics.write_bytes(calendar(f"UID:x\nDTSTART:{stamp(at(9, 9))}\nDTEND:{stamp(at(9, 10))}"))
    imported = runner.invoke(root, ["calendars", "import", str(ics), "--instrument", "NMR-600"])
    assert imported.exit_code == 0, imported.output
    assert "1 busy event(s)" in imported.output

    listed = runner.invoke(root, ["calendars", "list", "--instrument", "NMR-600"])
    assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 2
    assert "(upload)" in listed.output and "/lab.ics" in listed.output

    feed = runner.invoke(root, ["calendars", "feed", "--instrument", "NMR-600"])
    assert feed.exit_code == 0 and feed.output.count("BEGIN:VEVENT") == 8

    ics.write_bytes(b"not a calendar")
    bad = runner.invoke(root, ["calendars", "import", str(ics), "--instrument", "NMR-600"])
    assert bad.exit_code == 1 and "not an iCalendar file" in bad.output
    missing = runner.invoke(root, ["calendars", "import", str(ics), "--instrument", "NOPE"])
    assert missing.exit_code == 1 and "no instrument" in missing.output
    bad_url = runner.invoke(
        root, ["calendars", "add-url", "--instrument", "NMR-600", "file:///etc/passwd"]
    )
    assert bad_url.exit_code == 1 and "http" in bad_url.output


def test_webcal_urls_are_fetched_over_https_and_json_body_checked(
    client: TestClient, session: Session
):
    _instrument, _manager, created = _subscribe(
        client, session, "webcal://calendar.example/lab.ics"
    )
    assert created["url"] == "https://calendar.example/lab.ics"
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    url = f"/api/v1/instruments/{instrument.id}/calendars"
    for payload in (
        {"url": "https://x.example/a.ics", "refresh_minutes": 1},
        {"refresh_minutes": 60},
    ):
        assert client.post(url, json=payload, headers=auth(manager)).status_code == 422
    not_json = client.post(
        url, content=b"{", headers={**auth(manager), "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert (
        client.put(
            f"{url}/1", json={"url": "https://x.example/a.ics"}, headers=auth(manager)
        ).status_code
        == 415
    )


def test_private_addresses_are_refused_unless_allowed(
    client: TestClient,
    session: Session,
    engine: Engine,
    calendar_server: CalendarServer,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("LABSHARE_CALENDAR_ALLOW_PRIVATE_URLS", "false")
    get_settings.cache_clear()
    calendar_server.routes["/lab.ics"] = (200, lab_calendar())
    _instrument, _manager, created = _subscribe(client, session, calendar_server.url("/lab.ics"))
    (outcome,) = calendar_sources_sync_due(engine=engine)
    assert not outcome.ok and "private or local address (127.0.0.1)" in (outcome.error or "")
    assert calendar_server.hits == 0
    assert "private" in (_source(session, created["id"]).last_error or "")


def test_what_the_server_sent_never_reaches_the_recorded_error(
    client: TestClient, session: Session, engine: Engine, calendar_server: CalendarServer
):
    """A loopback service's body used to come back in last_error (the parser quoted it)."""
    calendar_server.routes["/a.ics"] = (200, b"root:x:0:0:SECRET-FROM-THE-SERVER\n")
    calendar_server.routes["/b.ics"] = (500, b"SECRET-FROM-THE-SERVER")
    _i, _m, first = _subscribe(client, session, calendar_server.url("/a.ics"))
    _i, _m, second = _subscribe(client, session, calendar_server.url("/b.ics"))
    outcomes = calendar_sources_sync_due(engine=engine)
    assert [o.ok for o in outcomes] == [False, False]
    for source_id in (first["id"], second["id"]):
        error = _source(session, source_id).last_error or ""
        assert error and "SECRET" not in error, error
    assert "HTTP 500" in (_source(session, second["id"]).last_error or "")


@pytest.mark.parametrize(
    "url", ["http://0177.0.0.1/cal.ics", "http://2130706433/cal.ics", "http://x.org:99999/"]
)
def test_disguised_addresses_are_a_422_when_subscribing(
    client: TestClient, session: Session, url: str
):
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    answer = client.post(
        f"/api/v1/instruments/{instrument.id}/calendars", json={"url": url}, headers=auth(manager)
    )
    assert answer.status_code == 422, answer.text
