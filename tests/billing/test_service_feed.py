"""The service-record feed a provincial platform pulls: off without its secret, pages after
a cursor, each page signed."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from billing.invoices import invoice_run
from core.db import session_scope
from core.settings import get_settings
from tests.billing.helpers import NOV, book

SECRET = "feed-secret-feed-secret-0123"
URL = "/api/v1/feeds/service-records"


def test_pages_after_a_cursor_signed(client, session, net, monkeypatch) -> None:
    assert client.get(URL).status_code == 404  # off until a secret is set
    monkeypatch.setenv("LABSHARE_SERVICE_FEED_SECRET", SECRET)
    get_settings.cache_clear()
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for day in range(3):
        booking = book(session, instrument=net.instrument, user=net.researcher,
                       start=NOV + timedelta(days=day))  # fmt: skip
        booking.purpose = f"XRD run {day}"
        session.add(booking)
        session.commit()
    with session_scope() as s:
        invoice_run(s, period="2026-11")
    headers = {"Authorization": f"Bearer {SECRET}"}
    first = client.get(URL, params={"limit": 2}, headers=headers)
    assert first.status_code == 200
    expected = "sha256=" + hmac.new(SECRET.encode(), first.content, hashlib.sha256).hexdigest()
    assert first.headers["X-Labshare-Signature"] == expected
    page = first.json()
    assert len(page["items"]) == 2 and page["next"] == page["items"][-1]["id"]
    record = page["items"][0]
    assert record["instrument"]["code"] == "MS-1" and record["hours"] == 2.0
    assert record["person"]["name"] == net.researcher.name and record["content"] == "XRD run 0"
    assert record["unit"]["code"] == "UNIV-B" and record["provider"] == "UNIV-A"
    rest = client.get(URL, params={"after": page["next"]}, headers=headers).json()
    assert len(rest["items"]) == 1 and rest["next"] is None
    for bad in ({"after": -1}, {"limit": 0}, {"limit": 5000}, {"since": 1}):
        assert client.get(URL, params=bad, headers=headers).status_code == 422, bad
