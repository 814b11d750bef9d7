"""Bad input at the catalog's edges is a 4xx with a reason on both databases, never a 500."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from instruments.models import Lab
from tests.factories import auth, create_instrument, create_user


def test_control_characters_in_search_are_422(client: TestClient, session: Session) -> None:
    create_instrument(session)
    for q in ("\x00", "orbi\x00trap", "a\nb"):
        response = client.get("/api/v1/instruments", params={"q": q})
        assert response.status_code == 422, q


def test_nul_bytes_anywhere_are_never_a_500(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    manager = create_user(session, role=Role.lab_manager, lab=session.get(Lab, instrument.lab_id))
    token = client.post(
        "/api/v1/auth/token", data={"username": "a\x00b@example.org", "password": "whatever1"}
    )
    assert token.status_code in (401, 422)  # PostgreSQL refuses the NUL before the lookup
    patch = client.patch(
        f"/api/v1/instruments/{instrument.id}", json={"name": "nul\x00name"}, headers=auth(manager)
    )
    assert patch.status_code in (200, 422)
    page = client.get("/", params={"category": "\x00"})
    assert page.status_code == 422


def test_opening_hours_with_an_offset_are_422(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    manager = create_user(session, role=Role.lab_manager, lab=session.get(Lab, instrument.lab_id))
    response = client.put(
        f"/api/v1/instruments/{instrument.id}/opening-hours",
        json={"intervals": [{"weekday": 1, "opens": "08:00+08:00", "closes": "12:00"}]},
        headers=auth(manager),
    )
    assert response.status_code == 422
    assert "without offset" in response.text


def test_unknown_or_repeated_filters_are_422(client: TestClient, session: Session) -> None:
    create_instrument(session)
    unknown = client.get("/api/v1/instruments", params={"colour": "red"})
    assert unknown.status_code == 422 and "unknown query parameter colour" in unknown.text
    repeated = client.get("/api/v1/instruments?lab=A&lab=B")
    assert repeated.status_code == 422 and "lab given more than once" in repeated.text


def test_forged_pagination_tokens_are_422(client: TestClient, session: Session) -> None:
    from core.pagination import encode_cursor

    create_instrument(session)
    for after in (10**20, 2**63):
        response = client.get("/api/v1/instruments", params={"next": encode_cursor(after)})
        assert response.status_code == 422
    # Beyond PostgreSQL's INTEGER ids: an empty page on SQLite, a 422 there; never a 500.
    wide = client.get("/api/v1/instruments", params={"next": encode_cursor(2**40)})
    assert wide.status_code in (200, 422)
