"""The notification inbox: a page with the unread count in the header, read one or all."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlmodel import Session

from booking.notifications.outbox import notify
from tests.factories import create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def _count(html: str) -> int | None:
    found = re.search(r'<span class="count"[^>]*>(\d+)</span>', html)
    return int(found.group(1)) if found else None


def test_the_inbox_shows_unread_in_the_header_and_marks_them_read(
    client: TestClient, session: Session
) -> None:
    user = create_user(session)
    other = create_user(session)
    for n in range(2):
        notify(session, user_id=user.id, kind="displaced", subject=f"Displaced {n}", body="why")
    notify(session, user_id=other.id, kind="displaced", subject="Not yours")
    session.commit()
    page_sign_in(client, user.email)

    inbox = client.get("/me/notifications")
    assert inbox.status_code == 200
    assert "Displaced 0" in inbox.text and "Displaced 1" in inbox.text
    assert "Not yours" not in inbox.text
    assert _count(client.get("/").text) == 2

    token = csrf_of(client, "/me/notifications")
    first = re.search(r'action="/me/notifications/(\d+)/read"', inbox.text)
    assert first is not None
    one = client.post(
        f"/me/notifications/{first.group(1)}/read",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert one.status_code == 303
    assert _count(client.get("/").text) == 1
    done = client.post("/me/notifications/read-all", data={"csrf_token": token})
    assert done.status_code == 200 and "All notifications are marked read." in done.text
    assert _count(done.text) is None

    zh = client.get("/me/notifications", headers={"Accept-Language": "zh-CN"}).text
    assert "通知" in zh
