"""A lab manager cannot look anyone up through qualifications, and can revoke them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from tests.booking.helpers import at, body
from tests.factories import auth, create_instrument, create_lab, create_user


def test_grants_by_email_say_nothing_about_who_exists(client: TestClient, session: Session) -> None:
    """Sequential user_ids returned any user's name and email network-wide."""
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab, qualification_required=True)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    stranger = create_user(session)
    url = f"/api/v1/instruments/{inst.id}/qualifications"
    known = client.post(url, json={"email": stranger.email}, headers=auth(manager))
    unknown = client.post(url, json={"email": "not.yet@example.org"}, headers=auth(manager))
    assert known.status_code == unknown.status_code == 201
    shape = lambda r: {k: v for k, v in r.json().items() if k not in ("id", "email", "granted_at")}  # noqa: E731
    assert shape(known) == shape(unknown) == {
        "instrument_id": inst.id, "user_id": None, "name": "", "level": "out_of_hours",
        "expires_at": None,
    }  # fmt: skip
    for user_id in range(1, 6):
        probe = client.post(url, json={"user_id": user_id}, headers=auth(manager))
        assert probe.status_code == 422 and "name" not in probe.text


def test_a_grant_waits_for_the_account_and_revoke_ends_it(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    inst = create_instrument(session, lab=lab, qualification_required=True)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    admin = create_user(session, role=Role.network_admin)
    url = f"/api/v1/instruments/{inst.id}/qualifications"
    client.post(url, json={"email": "newcomer@example.org"}, headers=auth(manager))
    made = client.post(
        "/api/v1/admin/users",
        json={"email": "newcomer@example.org", "password": "a good long password"},
        headers=auth(admin),
    )
    assert made.status_code == 201, made.text
    session.commit()
    from sqlmodel import select

    from core.models import User

    newcomer = session.exec(select(User).where(User.email == "newcomer@example.org")).one()
    headers = auth(newcomer)
    booked = client.post(
        "/api/v1/bookings", json=body(inst.id, at(8, 9), at(8, 10)), headers=headers
    )
    assert booked.status_code == 201, booked.text
    [grant] = client.get(url, headers=auth(manager)).json()
    assert grant["user_id"] == newcomer.id  # they booked with the lab now: named
    revoked = client.delete(
        f"{url}/{grant['id']}", params={"reason": "unsafe handling"}, headers=auth(manager)
    )
    assert revoked.status_code == 204
    assert client.get(url, headers=auth(manager)).json() == []
    refused = client.post(
        "/api/v1/bookings", json=body(inst.id, at(9, 9), at(9, 10)), headers=headers
    )
    assert refused.status_code == 403
    again = client.delete(f"{url}/{grant['id']}", headers=auth(manager))
    assert again.status_code == 404
    audit = client.get(
        "/api/v1/admin/audit", params={"action": "qualification."}, headers=auth(admin)
    )
    assert {e["action"] for e in audit.json()["items"]} == {
        "qualification.grant",
        "qualification.revoke",
    }
