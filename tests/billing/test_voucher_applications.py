"""Applying for an innovation voucher and the bureau's review, through the API, on both
databases; the budget race on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from billing.models import Voucher, VoucherProgramme, VoucherStatus
from billing.voucher_applications import application_approve, vouchers_expire
from billing.vouchers import ProgrammeIn, programme_create
from core.audit import AuditEntry
from core.errors import Conflict
from core.models import Role
from instruments.credit_code import check_character, credit_code_problem
from instruments.models import Institution, InstitutionKind
from tests.factories import auth, create_institution, create_user

TODAY = date.today()
# Real companies' codes, as published: each passes its check character.
VALID = ("9144030071526726XG", "91330100716105852F", "91110000802100433B")


def _code(n: int) -> str:
    """A made-up but well-formed credit code."""
    first17 = f"9131000{n:010d}"
    return first17 + check_character(first17)


def _programme(session: Session, *, budget: int = 1_000_000, cap: int = 300_000) -> int:
    programme = programme_create(
        session,
        data=ProgrammeIn(
            code=f"IV-{budget}-{cap}", name="City innovation vouchers", currency="cny",
            budget=budget, coverage_bp=5000, company_yearly_cap=cap,
            starts_on=TODAY - timedelta(days=30), ends_on=TODAY + timedelta(days=300),
        ),
    )  # fmt: skip
    session.commit()
    assert programme.id is not None
    return programme.id


def _firm(session: Session, n: int = 0) -> tuple[Institution, dict[str, str]]:
    firm = create_institution(
        session, kind=InstitutionKind.small_company, is_small_company=True, code=f"FIRM{n}"
    )
    return firm, auth(create_user(session, institution=firm))


def _fresh(session: Session) -> None:
    """End the test's read transaction, so it sees what the app committed since."""
    session.commit()
    session.expire_all()


def _apply(client: TestClient, who: dict[str, str], programme_id: int, **change: object):
    body = {"programme_id": programme_id, "amount": 100_000, "needs": "XRD of 12 samples",
            "credit_code": VALID[0], **change}  # fmt: skip
    return client.post("/api/v1/vouchers", json=body, headers=who)


def test_the_check_character_of_real_credit_codes() -> None:
    assert all(credit_code_problem(c) is None for c in VALID)
    assert "typing slip" in (credit_code_problem("9144030071526726XH") or "")
    assert "cannot hold I" in (credit_code_problem("91440300I1526726XG") or "")
    assert "18 characters" in (credit_code_problem("914403") or "")


def test_a_company_applies_and_the_bureau_approves_within_the_cap(
    client: TestClient, session: Session
) -> None:
    programme_id = _programme(session)
    firm, who = _firm(session)
    admin = auth(create_user(session, role=Role.network_admin))
    r = _apply(client, who, programme_id, credit_code="9144 0300 7152 6726 xg")
    assert r.status_code == 201, r.text
    applied = r.json()
    assert applied["status"] == "pending" and applied["balance"] == 0
    _fresh(session)
    assert session.get(Institution, firm.id).credit_code == VALID[0]  # type: ignore[union-attr]
    # One waiting application at a time.
    assert _apply(client, who, programme_id).status_code == 409
    queue = client.get("/api/v1/vouchers", params={"status": "pending"}, headers=admin).json()
    assert [v["id"] for v in queue] == [applied["id"]]
    r = client.post(f"/api/v1/vouchers/{applied['id']}/approve", json={"amount": 80_000},
                    headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    approved = r.json()
    assert (approved["status"], approved["amount"], approved["balance"]) == (
        "approved",
        80_000,
        80_000,
    )
    assert date.fromisoformat(approved["expires_on"]) <= TODAY + timedelta(days=300)
    # A decided application is not decided again.
    again = client.post(f"/api/v1/vouchers/{applied['id']}/reject", json={"reason": "x"},
                        headers=admin)  # fmt: skip
    assert again.status_code == 409
    mine = client.get(f"/api/v1/vouchers/{applied['id']}", headers=who).json()
    assert mine["status"] == "approved"
    _fresh(session)
    assert session.get(VoucherProgramme, programme_id).committed == 80_000  # type: ignore[union-attr]
    # The cap is 300,000 a year: 220,000 is left, so 250,000 is over it.
    over = _apply(client, who, programme_id, amount=250_000)
    assert over.status_code == 422 and "cap" in over.json()["detail"]
    actions = session.exec(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert {"voucher.apply", "voucher.approve", "institution.credit_code"} <= set(actions)


def test_refusals_say_why(client: TestClient, session: Session) -> None:
    programme_id = _programme(session)
    _firm(session)
    university = create_institution(session)
    academic = auth(create_user(session, institution=university))
    r = _apply(client, academic, programme_id)
    assert r.status_code == 422 and "small company" in r.json()["detail"]
    _, who = _firm(session, 1)
    r = _apply(client, who, programme_id, credit_code="9144030071526726XH")
    assert r.status_code == 422 and "typing slip" in r.json()["detail"]
    assert _apply(client, who, programme_id, amount=300_001).status_code == 422
    assert _apply(client, who, 999_999).status_code == 404
    # Someone else's voucher is not shown; a researcher cannot review.
    r = _apply(client, who, programme_id, credit_code=VALID[1])
    assert r.status_code == 201
    other = auth(create_user(session, institution=university))
    assert client.get(f"/api/v1/vouchers/{r.json()['id']}", headers=other).status_code == 404
    assert client.post(f"/api/v1/vouchers/{r.json()['id']}/approve", json={},
                       headers=who).status_code == 403  # fmt: skip
    # Another firm cannot claim a code already registered.
    _, third = _firm(session, 2)
    taken = _apply(client, third, programme_id, credit_code=VALID[1])
    assert taken.status_code == 422 and "registered" in taken.json()["detail"]
    # A rejection needs its reason, and the company reads it.
    admin = auth(create_user(session, role=Role.network_admin))
    url = f"/api/v1/vouchers/{r.json()['id']}/reject"
    assert client.post(url, json={"reason": "  "}, headers=admin).status_code == 422
    rejected = client.post(url, json={"reason": "Not a tech firm"}, headers=admin).json()
    assert (rejected["status"], rejected["reason"]) == ("rejected", "Not a tech firm")


def test_the_budget_stops_approvals_and_expiry_returns_what_was_unused(
    client: TestClient, session: Session
) -> None:
    programme_id = _programme(session, budget=150_000, cap=150_000)
    admin = auth(create_user(session, role=Role.network_admin))
    ids = []
    for n in range(2):
        _, who = _firm(session, n)
        r = _apply(client, who, programme_id, credit_code=_code(n))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert client.post(f"/api/v1/vouchers/{ids[0]}/approve", json={},
                       headers=admin).status_code == 200  # fmt: skip
    refused = client.post(f"/api/v1/vouchers/{ids[1]}/approve", json={}, headers=admin)
    assert refused.status_code == 409 and "budget" in refused.json()["detail"]
    partial = client.post(f"/api/v1/vouchers/{ids[1]}/approve", json={"amount": 50_000},
                          headers=admin)  # fmt: skip
    assert partial.status_code == 200
    # Both expire unused: the programme has its whole budget again.
    assert vouchers_expire(session, today=TODAY + timedelta(days=400)) == (2, 150_000)
    _fresh(session)
    assert session.get(VoucherProgramme, programme_id).committed == 0  # type: ignore[union-attr]
    statuses = session.exec(select(Voucher.status)).all()
    assert set(statuses) == {VoucherStatus.expired}


def test_concurrent_approvals_never_pass_the_budget(
    session: Session, engine: Engine, backend: str
) -> None:
    """Twelve reviewers approve twelve 100,000 applications at once against a 500,000
    budget: exactly five pass, and the programme has committed exactly its budget."""
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    programme_id = _programme(session, budget=500_000, cap=100_000)
    admin = create_user(session, role=Role.network_admin)
    ids = []
    for n in range(12):
        firm = create_institution(
            session, kind=InstitutionKind.small_company, is_small_company=True, code=f"RACE{n}"
        )
        applicant = create_user(session, institution=firm)
        voucher = Voucher(programme_id=programme_id, institution_id=firm.id or 0,
                          applicant_id=applicant.id or 0, year=TODAY.year, requested=100_000,
                          needs="NMR")  # fmt: skip
        session.add(voucher)
        session.commit()
        ids.append(voucher.id)
    start = threading.Barrier(len(ids))
    outcomes: list[str] = []

    def review(voucher_id: int) -> None:
        with Session(engine) as s:
            start.wait()
            try:
                application_approve(s, actor=admin, voucher_id=voucher_id)
                s.commit()
                outcomes.append("approved")
            except Conflict:
                s.rollback()
                outcomes.append("refused")

    threads = [threading.Thread(target=review, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("approved") == 5, outcomes
    _fresh(session)
    assert session.get(VoucherProgramme, programme_id).committed == 500_000  # type: ignore[union-attr]
