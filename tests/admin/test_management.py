"""Managing institutions, labs, users and roles; every change audited; the log read-only."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from tests.factories import auth, create_institution, create_lab, create_user

API = "/api/v1/admin"


def test_network_admin_manages_and_audit_records(client: TestClient, session: Session) -> None:
    admin = create_user(session, role=Role.network_admin)
    h = auth(admin)
    r = client.post(f"{API}/institutions", json={"code": "NEWCO", "name": "New Co", "kind": "company"},
                    headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    inst_id = r.json()["id"]
    flag = client.patch(f"{API}/institutions/{inst_id}", json={"is_small_company": True}, headers=h)
    assert flag.status_code == 200 and flag.json()["is_small_company"] is True
    assert client.post(f"{API}/institutions", json={"code": "NEWCO", "name": "x", "kind": "company"},
                       headers=h).status_code == 409  # fmt: skip
    lab = client.post(f"{API}/labs", json={"code": "NL", "name": "New Lab", "institution": "NEWCO"},
                      headers=h)  # fmt: skip
    assert lab.status_code == 201
    user = client.post(f"{API}/users", json={"email": "m@newco.example", "password": "longenough",
                                              "role": "lab_manager", "lab_id": lab.json()["id"]},
                       headers=h)  # fmt: skip
    assert user.status_code == 201 and user.json()["institution_id"] == inst_id
    promoted = client.patch(f"{API}/users/{user.json()['id']}", json={"role": "institution_admin"},
                            headers=h)  # fmt: skip
    assert promoted.status_code == 200 and promoted.json()["role"] == "institution_admin"
    assert client.patch(f"{API}/users/{admin.id}", json={"role": "researcher"},
                        headers=h).status_code == 409  # fmt: skip

    log = client.get(f"{API}/audit", params={"entity": "institution"}, headers=h).json()
    actions = [e["action"] for e in log["items"]]
    assert actions == ["institution.update", "institution.create"]
    update = log["items"][0]
    assert update["actor_id"] == admin.id
    assert (
        update["before"]["is_small_company"] is False
        and update["after"]["is_small_company"] is True
    )
    page = client.get(f"{API}/audit", params={"limit": 2}, headers=h).json()
    rest = client.get(f"{API}/audit", params={"limit": 50, "next": page["next"]}, headers=h).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 3
    since = client.get(f"{API}/audit", params={"since": "2026-01-01T00:00:00"}, headers=h)
    assert since.status_code == 422  # no offset
    # Read only: there is no way to edit or delete an entry.
    entry = update["id"]
    assert client.delete(f"{API}/audit/{entry}", headers=h).status_code in (404, 405)
    assert client.patch(f"{API}/audit/{entry}", json={}, headers=h).status_code in (404, 405)


def test_institution_admin_scope(client: TestClient, session: Session) -> None:
    a, b = create_institution(session), create_institution(session)
    lab_b = create_lab(session, institution=b)
    ia = create_user(session, role=Role.institution_admin, institution=a)
    member_b = create_user(session, institution=b)
    h = auth(ia)
    mine = client.post(f"{API}/users", json={"email": "new@a.example", "password": "longenough"},
                       headers=h)  # fmt: skip
    assert mine.status_code == 201 and mine.json()["institution_id"] == a.id
    assert (
        client.post(
            f"{API}/users",
            json={"email": "x@b.example", "password": "longenough", "institution_id": b.id},
            headers=h,
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"{API}/users",
            json={"email": "y@a.example", "password": "longenough", "role": "network_admin"},
            headers=h,
        ).status_code
        == 403
    )
    assert (
        client.patch(f"{API}/users/{member_b.id}", json={"name": "x"}, headers=h).status_code == 403
    )
    assert client.patch(f"{API}/users/{mine.json()['id']}", json={"lab_id": lab_b.id, "role": "lab_manager"},
                        headers=h).status_code == 422  # fmt: skip
    listed = client.get(f"{API}/users", headers=h).json()["items"]
    assert {u["institution_id"] for u in listed} == {a.id}
    assert client.post(f"{API}/institutions", json={"code": "Z", "name": "Z", "kind": "company"},
                       headers=h).status_code == 403  # fmt: skip
    own_log = client.get(f"{API}/audit", headers=h).json()["items"]
    assert [e["action"] for e in own_log] == ["user.create"]
    researcher = create_user(session, institution=a)
    assert client.get(f"{API}/users", headers=auth(researcher)).status_code == 403
    assert client.get(f"{API}/audit", headers=auth(researcher)).status_code == 403


def test_evaluation_flag_bars_rewards(client: TestClient, session: Session) -> None:
    from tests.admin.helpers import PERIOD, POLICY, build_network

    net = build_network(session)
    h = auth(net.admin)
    r = client.put(
        f"{API}/instruments/{net.i3.id}/evaluation", json={"result": "failed"}, headers=h
    )
    assert r.status_code == 200 and r.json()["result"] == "failed"
    client.post(f"{API}/policies", json=POLICY, headers=h)
    body = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()
    lines = {line["code"]: line for line in body["institutions"]}
    assert lines["UB"]["reward"] == 0 and lines["UA"]["reward"] == 4_000  # capped, no scaling
    log = client.get(f"{API}/audit", params={"action": "evaluation."}, headers=h).json()["items"]
    assert log[0]["after"] == {"result": "failed", "note": ""}
