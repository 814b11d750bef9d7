"""Helpers for page tests: read the CSRF token a page carries, sign in through the form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.factories import PASSWORD

_TOKEN = re.compile(r'name="csrf-token" content="([0-9a-f]+)"')


def csrf_of(client: TestClient, path: str = "/") -> str:
    """The CSRF token of the page at `path` (and the cookie it is bound to)."""
    response = client.get(path)
    found = _TOKEN.search(response.text)
    assert found, f"no CSRF token on {path}: {response.status_code}"
    return found.group(1)


def page_sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    """Sign in through the sign-in form; the client keeps the session cookie."""
    token = csrf_of(client, "/signin")
    response = client.post(
        "/signin",
        data={"email": email, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
