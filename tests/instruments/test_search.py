"""Catalog search: what `q` matches, taken literally, with the filters."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from instruments.models import InstrumentStatus
from tests.factories import create_institution, create_instrument, create_lab


def _names(client: TestClient, **params: str) -> list[str]:
    response = client.get("/api/v1/instruments", params=params)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_q_matches_own_fields_category_group_lab_and_institution(
    client: TestClient, session: Session
) -> None:
    xjtu = create_institution(session, code="XJTU", name="Xi'an Jiaotong University")
    core = create_lab(session, institution=xjtu, code="XJTU-ATC", name="Testing Centre")
    other = create_lab(session, code="ELSE", name="Elsewhere")
    create_instrument(session, lab=core, name="Alpha", manufacturer="Bruker")
    create_instrument(session, lab=other, name="Beta", model="Orbitrap 480")
    create_instrument(
        session, lab=other, name="Gamma 100%_pure", status=InstrumentStatus.maintenance
    )

    assert _names(client, q="BRUKER") == ["Alpha"]
    assert _names(client, q="orbitrap") == ["Beta"]
    assert _names(client, q="jiaotong") == ["Alpha"]  # the institution's name
    assert _names(client, q="testing centre") == ["Alpha"]  # the lab's name
    assert _names(client, q="ms group") == ["Alpha", "Beta", "Gamma 100%_pure"]  # the group
    assert _names(client, q="LC-MS", lab="ELSE") == ["Beta", "Gamma 100%_pure"]  # the leaf
    assert _names(client, q="100%_") == ["Gamma 100%_pure"]
    assert _names(client, q="a%a") == []  # % is a character, not a wildcard
    assert _names(client, q="alpha", institution="XJTU") == ["Alpha"]
    assert _names(client, q="a", status="maintenance") == ["Gamma 100%_pure"]
    assert _names(client, q="a", category="ms", lab="XJTU-ATC") == ["Alpha"]
