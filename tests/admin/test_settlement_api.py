"""Settlements through the API: figures, caps, pro-rata, determinism, finalize, exports."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import text
from sqlmodel import Session

from billing.ledger import balances, ledger_totals
from core.models import Role
from tests.admin.helpers import PERIOD, POLICY, build_network
from tests.factories import auth, create_lab, create_user

API = "/api/v1/admin"


def test_preview_figures_cap_and_pro_rata(client: TestClient, session: Session) -> None:
    net = build_network(session)
    h = auth(net.admin)
    policy = client.post(f"{API}/policies", json=POLICY, headers=h)
    assert policy.status_code == 201, policy.text
    r = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "preview" and body["policy_id"] == policy.json()["id"]
    lines = {line["code"]: line for line in body["institutions"]}
    # I1: 5 external hours -> 50 points -> 5,000; I3: 5 h -> 5,000; both capped at 4,000;
    # 8,000 > 7,001 so scaled by 7001/8000: 3,500.5 each, the odd cent to the lower id (A).
    assert lines["UA"]["external_hours"] == 5.0 and lines["UB"]["external_hours"] == 5.0
    assert lines["UA"]["claim"] == 5_000 and lines["UA"]["capped"] is True
    assert (lines["UA"]["reward"], lines["UB"]["reward"]) == (3_501, 3_500)
    assert body["total_reward"] == 7_001 and body["scale"] == "7001/8000"
    assert lines["UA"]["external_revenue"] == 50_000 and lines["UB"]["external_revenue"] == 20_000
    assert lines["UA"]["vouchers_redeemed"] == 25_000
    assert (
        lines["UA"]["voucher_reimbursement"] == 25_000 and lines["UB"]["voucher_reimbursement"] == 0
    )
    assert "SC" not in lines  # owns no instruments

    instruments = client.get(f"{API}/settlements/{body['id']}/instruments", headers=h).json()
    by_id = {i["instrument_id"]: i for i in instruments["items"]}
    assert by_id[net.i1.id]["outside_users"] == 2 and by_id[net.i1.id]["used_hours"] == 6.0
    assert by_id[net.i1.id]["score"] == "50.0000" and by_id[net.i1.id]["reward"] == 3_501
    assert by_id[net.i2.id]["eligible"] is False
    assert by_id[net.i2.id]["reason"] == "asset value below the minimum"
    assert by_id[net.i3.id]["outside_users"] == 2 and by_id[net.i3.id]["external_hours"] == 5.0

    # Same inputs, same numbers and the same hash.
    again = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()
    assert again["inputs_hash"] == body["inputs_hash"]
    assert again["institutions"] == body["institutions"]


def test_finalize_is_once_and_immutable(client: TestClient, session: Session, backend: str) -> None:
    net = build_network(session)
    h = auth(net.admin)
    client.post(f"{API}/policies", json=POLICY, headers=h)
    sid = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]
    other = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]

    done = client.post(f"{API}/settlements/{sid}/finalize", headers=h)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "finalized" and done.json()["journal_entry_id"]
    again = client.post(f"{API}/settlements/{sid}/finalize", headers=h)
    assert again.status_code == 409 and "finalized" in again.json()["detail"]
    second = client.post(f"{API}/settlements/{other}/finalize", headers=h)
    assert second.status_code == 409 and "already settled" in second.json()["detail"]
    patch = client.patch(f"{API}/settlements/{sid}", json={"note": "x"}, headers=h)
    assert patch.status_code == 409
    assert client.delete(f"{API}/settlements/{sid}", headers=h).status_code == 409
    assert client.delete(f"{API}/settlements/{other}", headers=h).status_code == 204

    # The ledger balances and owes A its reward plus its voucher reimbursement.
    session.expire_all()
    assert all(total == 0 for total in ledger_totals(session).values())
    owed = {code: bal for code, bal in [(c, b) for c, _, b in balances(session)]}
    assert owed["reimbursement:UA:cny"] == -(3_501 + 25_000)
    if backend == "postgresql":
        import pytest
        from sqlalchemy.exc import DBAPIError

        with pytest.raises(DBAPIError, match="finalized"):
            session.execute(
                text("UPDATE settlement SET total_reward = 0 WHERE id = :i"), {"i": sid}
            )
        session.rollback()
        with pytest.raises(DBAPIError, match="never edited"):
            session.execute(text("DELETE FROM audit_entry"))
        session.rollback()

    # Payouts without Stripe are recorded, once.
    paid = client.post(f"{API}/settlements/{sid}/payouts", headers=h).json()
    assert [(p["amount"], p["status"]) for p in paid] == [(28_501, "recorded"), (3_500, "recorded")]
    assert len(client.post(f"{API}/settlements/{sid}/payouts", headers=h).json()) == 2


def test_finalize_refuses_changed_inputs(client: TestClient, session: Session) -> None:
    from tests.admin.helpers import add_usage, at

    net = build_network(session)
    h = auth(net.admin)
    client.post(f"{API}/policies", json=POLICY, headers=h)
    sid = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]
    add_usage(session, net.i3, net.uc, at(20, 1), at(20, 2))
    r = client.post(f"{API}/settlements/{sid}/finalize", headers=h)
    assert r.status_code == 409 and "changed since this preview" in r.json()["detail"]
    redo = client.patch(f"{API}/settlements/{sid}", json={}, headers=h)
    assert redo.status_code == 200
    assert client.post(f"{API}/settlements/{sid}/finalize", headers=h).status_code == 200


def test_exports(client: TestClient, session: Session) -> None:
    net = build_network(session)
    h = auth(net.admin)
    client.post(f"{API}/policies", json=POLICY, headers=h)
    sid = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]
    r = client.get(f"{API}/settlements/{sid}.csv", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    ua = next(row for row in rows if row["institution_code"] == "UA")
    assert (
        ua["external_hours"],
        ua["external_revenue"],
        ua["vouchers_redeemed"],
        ua["reward"],
    ) == (
        "5.00",
        "50000",
        "25000",
        "3501",
    )
    x = client.get(f"{API}/settlements/{sid}.xlsx", headers=h)
    assert x.status_code == 200
    book = load_workbook(io.BytesIO(x.content))
    assert book.sheetnames == ["Settlement", "Institutions", "Instruments"]
    header = [c.value for c in book["Institutions"][1]]
    first = dict(zip(header, [c.value for c in book["Institutions"][2]], strict=True))
    assert (first["institution_code"], first["reward"], first["payout"]) == ("UA", 3501, 28501)
    assert client.get(f"{API}/settlements/999.csv", headers=h).status_code == 404


def test_bad_input_and_permissions(client: TestClient, session: Session) -> None:
    net = build_network(session)
    h = auth(net.admin)
    assert client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).status_code == 422
    bad = dict(POLICY, weights={"external_hours": -1})
    r = client.post(f"{API}/policies", json=bad, headers=h)
    assert r.status_code == 422 and "external_hours" in r.text
    nobudget = {k: v for k, v in POLICY.items() if k != "budget"}
    assert client.post(f"{API}/policies", json=nobudget, headers=h).status_code == 422
    assert client.post(f"{API}/policies", json=POLICY, headers=h).status_code == 201
    empty = client.post(f"{API}/settlements", json={"period": "2025-01"}, headers=h)
    assert empty.status_code == 422 and "nothing to settle" in empty.json()["detail"]
    assert (
        client.post(f"{API}/settlements", json={"period": "2025-13"}, headers=h).status_code == 422
    )
    lab_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    for other in (
        create_user(session, institution=net.a),
        lab_manager,
        create_user(session, role=Role.institution_admin, institution=net.a),
    ):
        oh = auth(other)
        assert (
            client.post(f"{API}/settlements", json={"period": PERIOD}, headers=oh).status_code
            == 403
        )
        assert client.get(f"{API}/kpis", params={"period": PERIOD}, headers=oh).status_code == 403
        assert client.post(f"{API}/policies", json=POLICY, headers=oh).status_code == 403
    assert client.get(f"{API}/settlements").status_code == 401


def test_finalize_waits_for_the_billing_month_to_close(
    client: TestClient, session: Session
) -> None:
    """A month's settlement was finalized and paid out before its invoices were run; the
    run then added 1.25 M CNY of external revenue the frozen settlement never saw."""
    from billing.models import BillingPeriod, PeriodStatus

    net = build_network(session, billing_closed=False)
    h = auth(net.admin)
    client.post(f"{API}/policies", json=POLICY, headers=h)
    sid = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]
    early = client.post(f"{API}/settlements/{sid}/finalize", headers=h)
    assert early.status_code == 409 and "not closed" in early.json()["detail"]
    session.add(BillingPeriod(period=PERIOD, status=PeriodStatus.open, runs=1))
    session.commit()
    assert client.post(f"{API}/settlements/{sid}/finalize", headers=h).status_code == 409
    row = session.get(BillingPeriod, PERIOD)
    row.status = PeriodStatus.closed
    session.add(row)
    session.commit()
    assert client.post(f"{API}/settlements/{sid}/finalize", headers=h).status_code == 200
