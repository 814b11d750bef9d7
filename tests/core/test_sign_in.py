"""Sign-in as an attacker tries it: guessing is throttled, weak passwords refused, and a
token ends at sign-out or a password change."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.auth import password_problem
from core.models import Role
from core.settings import get_settings
from tests.factories import PASSWORD, auth, create_user, sign_in
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def _try(client: TestClient, email: str, password: str, address: str = "testclient"):
    return client.post("/api/v1/auth/token", data={"username": email, "password": password})


def test_guessing_an_account_is_throttled_even_for_the_right_password(
    client: TestClient, session: Session
) -> None:
    """60 wrong passwords went through in 12 s, then the right one worked."""
    user = create_user(session)
    answers = [_try(client, user.email, f"guess-{n}").status_code for n in range(12)]
    limit = get_settings().sign_in_max_failures
    assert answers[:limit] == [401] * limit
    assert set(answers[limit:]) == {429}
    right = _try(client, user.email, PASSWORD)
    assert right.status_code == 429
    assert 0 < int(right.headers["Retry-After"]) <= 15 * 60
    assert "try again" in right.json()["detail"]


def test_guessing_many_accounts_from_one_address_is_throttled(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABSHARE_SIGN_IN_MAX_FAILURES_PER_ADDRESS", "12")
    get_settings.cache_clear()
    try:
        people = [create_user(session) for _ in range(13)]
        answers = [_try(client, p.email, "wrong-password").status_code for p in people]
        assert answers[-1] == 429 and answers.count(401) == 12
        # Unknown emails count too, and are answered like wrong passwords.
        assert _try(client, "nobody@example.org", "x").status_code == 429
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_one_locked_account_does_not_lock_out_its_campus(
    client: TestClient, session: Session
) -> None:
    """The per-address limit was the per-account one (10): someone guessing one account,
    or mistyping, behind a university's or a company's single address refused everyone
    behind it for 15 minutes. The address allows ten times as many failures."""
    settings = get_settings()
    assert settings.sign_in_max_failures_per_address >= 10 * settings.sign_in_max_failures
    guessed, colleague = create_user(session), create_user(session)
    answers = [_try(client, guessed.email, f"guess-{n}").status_code for n in range(11)]
    assert answers[-1] == 429
    assert _try(client, colleague.email, PASSWORD).status_code == 200


@pytest.mark.parametrize(
    "password",
    ["password", " " * 8, "          ", "password123", "qwertyuiop", "aaaaaaaaaaaa", "short"],
)
def test_weak_passwords_are_refused(password: str) -> None:
    assert password_problem(password, email="wang.li@example.org") is not None


def test_a_password_with_ones_email_is_refused() -> None:
    assert password_problem("wang.li-2026!", email="wang.li@example.org") is not None
    assert password_problem("correct horse battery", email="wang.li@example.org") is None


def test_admins_cannot_create_weak_passwords(client: TestClient, session: Session) -> None:
    admin = create_user(session, role=Role.network_admin)
    answer = client.post(
        "/api/v1/admin/users",
        json={"email": "new@example.org", "password": "password", "role": "researcher"},
        headers=auth(admin),
    )
    assert answer.status_code == 422, answer.text


def test_sign_out_ends_the_token_at_once(client: TestClient, session: Session) -> None:
    """A token stayed valid for 12 h after sign-out."""
    user = create_user(session)
    headers = sign_in(client, user.email)
    other = sign_in(client, user.email)  # another device
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/signout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.get("/api/v1/me", headers=other).status_code == 200


def test_a_password_change_ends_every_other_session(client: TestClient, session: Session) -> None:
    user = create_user(session)
    headers = sign_in(client, user.email)
    phone = sign_in(client, user.email)
    url = "/api/v1/me/password"
    wrong = client.post(
        url, json={"current_password": "nope", "new_password": "a much better one"}, headers=headers
    )
    assert wrong.status_code == 401
    weak = client.post(
        url, json={"current_password": PASSWORD, "new_password": "password1"}, headers=headers
    )
    assert weak.status_code == 422
    changed = client.post(
        url,
        json={"current_password": PASSWORD, "new_password": "a much better one"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert client.get("/api/v1/me", headers=fresh).status_code == 200
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.get("/api/v1/me", headers=phone).status_code == 401
    assert _try(client, user.email, "a much better one").status_code == 200
    assert _try(client, user.email, PASSWORD).status_code == 401


def test_page_sign_out_ends_the_cookies_session(client: TestClient, session: Session) -> None:
    from labshare.pages.web import SESSION_COOKIE

    user = create_user(session)
    page_sign_in(client, user.email)
    token = client.cookies.get(SESSION_COOKIE)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    response = client.post(
        "/signout", data={"csrf_token": csrf_of(client, "/")}, follow_redirects=False
    )
    assert response.status_code == 303
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_signed_in_person_is_one_dependency_and_the_docs_show_the_bearer_scheme() -> None:
    """FastAPI solves the token and what a route wants of its person as one dependency
    (core.deps.SignedIn); the API docs still show one bearer scheme, on every route that
    needs a person, and none on the sign-in itself."""
    from fastapi.routing import APIRoute

    from core.deps import SignedIn
    from labshare.app import create_app

    app = create_app()
    schema = app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes) == ["OAuth2PasswordBearer"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert schema["paths"]["/api/v1/bookings"]["post"]["security"] == [{"OAuth2PasswordBearer": []}]
    assert "security" not in schema["paths"]["/api/v1/auth/token"]["post"]

    def routes(found: list) -> list[APIRoute]:
        out: list[APIRoute] = []
        for route in found:
            if isinstance(route, APIRoute):
                out.append(route)
            elif hasattr(route, "original_router"):
                out.extend(routes(route.original_router.routes))
        return out

    booking = next(
        r for r in routes(app.routes) if r.path.endswith("/bookings") and "POST" in r.methods
    )
    [person] = booking.dependant.dependencies
    assert isinstance(person.call, SignedIn)
    assert person.dependencies == []  # not a function of the scheme's token: one call
