"""The notification outbox through the API, and its delivery to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
import typer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from booking.notifications.cli import mount
from booking.notifications.mailer import MailConfigInvalid, MailerUnavailable, parse_smtp_url
from booking.notifications.models import Notification
from booking.notifications.outbox import notify
from booking.notifications.service import MAX_ATTEMPTS, notifications_send_pending
from core.models import User
from core.settings import get_settings
from tests.factories import auth, create_user

runner = CliRunner()
root = typer.Typer()
mount(root)
REFUSED = "nobody@refused.example"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd handler: keeps what it is sent; refuses one address."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_RCPT(self, server, session, envelope: Envelope, address: str, options):
        if address == REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope: Envelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted"


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_authenticator,
        auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        yield inbox, f"smtp://mailer:s3cret@127.0.0.1:{port}?from=noreply%40lab.example"
    finally:
        controller.stop()


def _notes(session: Session, user: User, count: int, **extra: Any) -> list[int]:
    assert user.id is not None
    ids = [
        notify(
            session, user_id=user.id, kind="test", subject=f"Note {i}", body=f"Body {i}", **extra
        ).id
        for i in range(count)
    ]
    session.commit()
    return [i for i in ids if i is not None]


def test_list_newest_first_paginated_filtered_and_mark_read(client: TestClient, session: Session):
    me, other = create_user(session), create_user(session)
    ids = _notes(session, me, 3)
    (others,) = _notes(session, other, 1)

    page = client.get("/api/v1/notifications?limit=2", headers=auth(me))
    assert page.status_code == 200
    data = page.json()
    assert [n["id"] for n in data["items"]] == [ids[2], ids[1]] and data["unread"] == 3
    assert data["items"][0]["subject"] == "Note 2" and data["items"][0]["read_at"] is None
    rest = client.get(f"/api/v1/notifications?limit=2&next={data['next']}", headers=auth(me)).json()
    assert [n["id"] for n in rest["items"]] == [ids[0]] and rest["next"] is None

    read = client.post(f"/api/v1/notifications/{ids[1]}/read", headers=auth(me))
    assert read.status_code == 200 and read.json()["read_at"].endswith("Z")
    again = client.post(f"/api/v1/notifications/{ids[1]}/read", headers=auth(me))
    assert again.json()["read_at"] == read.json()["read_at"]
    unread = client.get("/api/v1/notifications?unread=true", headers=auth(me)).json()
    assert [n["id"] for n in unread["items"]] == [ids[2], ids[0]] and unread["unread"] == 2
    done = client.get("/api/v1/notifications?unread=false", headers=auth(me)).json()
    assert [n["id"] for n in done["items"]] == [ids[1]]

    assert client.post(f"/api/v1/notifications/{others}/read", headers=auth(me)).status_code == 404
    assert client.post("/api/v1/notifications/999999/read", headers=auth(me)).status_code == 404
    assert client.get("/api/v1/notifications?colour=red", headers=auth(me)).status_code == 422
    assert client.get("/api/v1/notifications?next=garbage", headers=auth(me)).status_code == 422
    assert client.get("/api/v1/notifications").status_code == 401
    marked = client.post("/api/v1/notifications/read-all", headers=auth(me))
    assert marked.json() == {"marked": 2}
    assert client.get("/api/v1/notifications", headers=auth(other)).json()["unread"] == 1


def test_send_pending_over_smtp_marks_sent_and_records_refusals(
    session: Session, engine: Engine, smtp: tuple[Inbox, str]
):
    inbox, url = smtp
    alice = create_user(session, email="alice@uni.example")
    refused = create_user(session, email=REFUSED)
    gone = create_user(session, email="gone@uni.example")
    gone.is_active = False
    session.add(gone)
    session.commit()
    sent_ids = _notes(session, alice, 3)
    (refused_id,) = _notes(session, refused, 1)
    _notes(session, gone, 1)

    report = notifications_send_pending(smtp_url=url, engine=engine, batch=2)
    assert (report.sent, report.failed) == (3, 1)
    assert "no such user" in report.failures[refused_id]
    assert [to for to, _ in inbox.messages] == [["alice@uni.example"]] * 3
    first = inbox.messages[0][1]
    assert first["Subject"] == "[labshare] Note 0" and first["From"] == "noreply@lab.example"
    assert first["Message-ID"].startswith(f"<notification-{sent_ids[0]}.")
    assert first.get_payload().strip() == "Body 0"

    session.rollback()
    session.expire_all()
    rows = {n.id: n for n in session.exec(select(Notification)).all()}
    assert all(rows[i].sent_at is not None for i in sent_ids)
    assert rows[refused_id].sent_at is None
    assert rows[refused_id].data["delivery"]["attempts"] == 1

    # Nothing is sent twice; the refused one is retried until MAX_ATTEMPTS, then left.
    for _ in range(MAX_ATTEMPTS + 1):
        again = notifications_send_pending(smtp_url=url, engine=engine)
        assert again.sent == 0
    assert len(inbox.messages) == 3
    session.rollback()
    session.expire_all()
    assert session.get(Notification, refused_id).data["delivery"]["attempts"] == MAX_ATTEMPTS  # type: ignore[union-attr]


def test_mailer_errors(engine: Engine, session: Session):
    with pytest.raises(MailConfigInvalid):
        parse_smtp_url("http://mail.example")
    with pytest.raises(MailConfigInvalid):
        parse_smtp_url("smtp://mail.example:notaport")
    config = parse_smtp_url("smtps://u%40x:p%3Aw@mail.example")
    assert (config.port, config.username, config.password) == (465, "u@x", "p:w")
    assert parse_smtp_url("smtp+starttls://mail.example").port == 587
    _notes(session, create_user(session), 1)
    with pytest.raises(MailerUnavailable):
        notifications_send_pending(smtp_url=f"smtp://127.0.0.1:{_free_port()}", engine=engine)


def test_cli_send(
    session: Session, engine: Engine, smtp: tuple[Inbox, str], monkeypatch: pytest.MonkeyPatch
):
    inbox, url = smtp
    _notes(session, create_user(session), 2)
    monkeypatch.delenv("LABSHARE_SMTP_URL", raising=False)
    get_settings.cache_clear()
    unset = runner.invoke(root, ["notifications", "send"])
    assert unset.exit_code == 0 and "LABSHARE_SMTP_URL is not set" in unset.output
    assert "2 notification(s)" in unset.output and inbox.messages == []

    monkeypatch.setenv("LABSHARE_SMTP_URL", url)
    get_settings.cache_clear()
    sent = runner.invoke(root, ["notifications", "send"])
    assert sent.exit_code == 0, sent.output
    assert "sent 2 notification(s)" in sent.output and len(inbox.messages) == 2

    monkeypatch.setenv("LABSHARE_SMTP_URL", f"smtp://127.0.0.1:{_free_port()}")
    get_settings.cache_clear()
    _notes(session, create_user(session), 1)
    down = runner.invoke(root, ["notifications", "send"])
    assert down.exit_code == 1 and "SMTP 127.0.0.1" in down.output
    monkeypatch.setenv("LABSHARE_SMTP_URL", "ftp://nowhere")
    get_settings.cache_clear()
    bad = runner.invoke(root, ["notifications", "send"])
    assert bad.exit_code == 1 and "scheme" in bad.output


def test_two_senders_on_postgresql_send_each_message_once(
    session: Session, engine: Engine, smtp: tuple[Inbox, str], backend: str
):
    """Rows are claimed with FOR UPDATE SKIP LOCKED: parallel senders split the outbox.
    (SQLite has one writer; run one sender there.)"""
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's")
    import threading

    inbox, url = smtp
    users = [create_user(session) for _ in range(3)]
    for user in users:
        _notes(session, user, 10)
    reports = []

    def run() -> None:
        reports.append(notifications_send_pending(smtp_url=url, engine=engine, batch=4))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [message["Message-ID"] for _, message in inbox.messages]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert sum(r.sent for r in reports) == 30
    session.rollback()
    assert all(n.sent_at for n in session.exec(select(Notification)).all())
