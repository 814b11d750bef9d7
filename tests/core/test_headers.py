"""What every answer tells the browser, and addresses never taken from the Host header."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.settings import get_settings
from tests.factories import auth, create_user


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/v1/instruments", "/nope"])
def test_pages_and_api_carry_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "font-src 'self' data:" in policy  # FullCalendar's embedded icon font
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_no_page_has_an_inline_script(client: TestClient, session: Session) -> None:
    """The policy forbids inline scripts, so none may be left for it to block."""
    user = create_user(session)
    session.commit()
    for path in ("/", "/me/bookings", "/me/invoices"):
        text = client.get(path, headers=auth(user)).text
        for chunk in text.split("<script")[1:]:
            tag = chunk.split(">", 1)[0]
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)


def test_feed_links_use_the_public_url_not_the_host_header(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = create_user(session)
    session.commit()
    monkeypatch.setattr(get_settings(), "public_url", "https://labs.example.org")
    forged = {**auth(user), "Host": "evil.example.com"}
    links = client.get("/api/v1/me/calendar", headers=forged).json()
    assert links["feed_url"].startswith("https://labs.example.org/ical/users/")
    assert links["webcal_url"].startswith("webcal://labs.example.org/")
    page = client.get("/me/bookings", headers=forged).text
    assert "evil.example.com" not in page and "https://labs.example.org/ical/users/" in page
