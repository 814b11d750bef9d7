from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from tests.factories import auth, create_instrument, create_lab, create_user, sign_in


def test_search_filters_and_pages(client: TestClient, session: Session) -> None:
    lab = create_lab(session, code="CHEM1", name="Chemistry Core")
    for n in range(5):
        create_instrument(session, lab=lab, name=f"Orbitrap {n}", manufacturer="Thermo")
    create_instrument(session, name="Cryo-EM Krios")

    first = client.get("/api/v1/instruments", params={"q": "orbitrap", "limit": 3}).json()
    assert [i["name"] for i in first["items"]] == ["Orbitrap 0", "Orbitrap 1", "Orbitrap 2"]
    rest = client.get(
        "/api/v1/instruments", params={"q": "orbitrap", "limit": 3, "next": first["next"]}
    ).json()
    assert [i["name"] for i in rest["items"]] == ["Orbitrap 3", "Orbitrap 4"]
    assert rest["next"] is None
    by_lab = client.get("/api/v1/instruments", params={"lab": "CHEM1"}).json()
    assert len(by_lab["items"]) == 5
    assert by_lab["items"][0]["lab"] == {"id": lab.id, "code": "CHEM1", "name": "Chemistry Core"}


def test_read_one_instrument(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session, name="NMR 600")
    body = client.get(f"/api/v1/instruments/{instrument.id}").json()
    assert body["name"] == "NMR 600"
    assert body["category"] == "ms-lc"
    assert body["rules"]["slot_step_minutes"] == 30
    assert body["rates"][0] == {
        "payer_class": "academic",
        "unit": "hour",
        "amount": 30000,
        "currency": "cny",
    }
    assert len(body["opening_hours"]) == 7


def test_bad_input_is_422_or_404(client: TestClient, session: Session) -> None:
    create_instrument(session)
    assert client.get("/api/v1/instruments", params={"colour": "red"}).status_code == 422
    assert client.get("/api/v1/instruments", params={"lab": "bad code!"}).status_code == 422
    assert client.get("/api/v1/instruments", params={"next": "garbage"}).status_code == 422
    assert client.get("/api/v1/instruments", params={"limit": 5000}).status_code == 422
    assert client.get("/api/v1/instruments", params={"lab": "NOPE"}).status_code == 422
    assert client.get("/api/v1/instruments/999999").status_code == 404


def test_only_the_labs_manager_edits(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    lab_id = instrument.lab_id
    from instruments.models import Lab

    manager = create_user(session, role=Role.lab_manager, lab=session.get(Lab, lab_id))
    other_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    researcher = create_user(session)
    admin = create_user(session, role=Role.network_admin)
    url = f"/api/v1/instruments/{instrument.id}"

    assert client.patch(url, json={"name": "x"}).status_code == 401
    for stranger in (other_manager, researcher, admin):
        assert client.patch(url, json={"name": "x"}, headers=auth(stranger)).status_code == 403
    response = client.patch(url, json={"name": "Renamed"}, headers=sign_in(client, manager.email))
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"


def test_wrong_password_is_401(client: TestClient, session: Session) -> None:
    user = create_user(session)
    response = client.post(
        "/api/v1/auth/token", data={"username": user.email, "password": "wrong password"}
    )
    assert response.status_code == 401


def test_healthz_checks_the_database(client: TestClient, backend: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": backend}
